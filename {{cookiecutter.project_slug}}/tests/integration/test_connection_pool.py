"""A full Redis connection pool is back-pressure, not an outage.

Hundreds of locked increments at once, through nginx, with Redis healthy: a
worker whose connections are all in use makes a call wait for one (bounded),
and past that wait answers 503 `busy` with Retry-After, which opens no
breaker and changes nothing. No answer says the backend is down, no lease
is lost (each hold outlasts a renewal period, so leases are re-armed while
the pools are at their fullest), and every increment answered 200 counted
exactly once.

Redis stalls for half a second mid-burst (a slow script, as a healthy Redis
does now and then, well within REDIS_TIMEOUT_SECONDS): every worker's waiting
requests then have a call in flight at once, more than its pool holds.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from client import Client, assert_error, assert_json, describe, run_concurrently, unique
from stacks import BACKEND, own_stack_or_skip

from stack.project import gunicorn_settings

# Requests at once, eight per lock name: one holds it, seven poll for it, so more
# than 100 requests per worker (redis-py's default pool) poll at once.
REQUESTS = 400
NAMES = 50
# Each hold outlasts the renewal period (a third of the default 5 s lease).
HOLD_MS = 1800
# Eight holds in a row per name, on a loaded machine: no caller may time out.
LOCK_WAIT_SECONDS = 60
# The requests start over this long, all still at once: the listen backlog (128
# under aiohttp's worker) is not what this measures.
RAMP_SECONDS = 1.0
# Once every request has started, Redis runs one script this long.
STALL_SECONDS = 0.5
# Bounded: every request is answered within this, whatever it answers.
ANSWER_WITHIN = 90.0
# What back-pressure may answer instead of 200: both say when to retry.
REFUSALS = {(503, "busy"), (429, "rate_limited")}


# Redis busy for ARGV[1] microseconds, by its own clock.
STALL = """
local t0 = redis.call('TIME')
local start = t0[1] * 1000000 + t0[2]
while true do
  local t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1]) then
    return 1
  end
end
"""


@pytest.fixture(
    scope="module",
    params=[
        ({}, STALL_SECONDS),
        # One connection per worker, waited for half a second at most (and no stall,
        # which would outlast that socket timeout): most runs answer some 503 busy.
        ({"REDIS_MAX_CONNECTIONS": "1", "REDIS_TIMEOUT_SECONDS": "0.5"}, 0.0),
    ],
    ids=["default-pool", "one-connection"],
)
def pool_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    if BACKEND != "redis":
        pytest.skip("a Redis connection pool; this run's stacks use the embedded backend")
    settings, stall = request.param
    env = {"WEB_CONCURRENCY": "3", "LOCK_WAIT_SECONDS": str(LOCK_WAIT_SECONDS), **settings}
    if gunicorn_settings({**os.environ, **env}).worker_class in {"sync", "gthread"}:
        pytest.skip(
            "a sync or gthread worker has a connection per request it serves at once "
            "(test_config.py): its calls never wait for one"
        )
    with own_stack_or_skip(tmp_path_factory, "pool", env) as started:
        yield started, stall


def stall_redis(url: str, at: float, seconds: float) -> None:
    """At monotonic time `at`, keep Redis busy for `seconds`."""
    time.sleep(max(0.0, at - time.monotonic()))
    with contextlib.closing(redis.Redis.from_url(url, socket_timeout=seconds + 10)) as r:
        r.eval(STALL, 0, int(seconds * 1_000_000))


def test_a_full_pool_answers_busy_never_backend_down(pool_stack) -> None:
    pool_stack, stall = pool_stack
    client = Client(pool_stack.base_url)
    names = [unique("pool") for _ in range(NAMES)]
    log_before = pool_stack.gunicorn_log.read_text(errors="replace")
    started = time.monotonic()

    def increment(i: int, name: str) -> tuple[str, requests.Response]:
        time.sleep(max(0.0, started + i * RAMP_SECONDS / REQUESTS - time.monotonic()))
        resp = client.post(
            f"/api/locked-increment/{name}", json={"hold_ms": HOLD_MS}, timeout=ANSWER_WITHIN
        )
        return name, resp

    calls = [functools.partial(increment, i, names[i % NAMES]) for i in range(REQUESTS)]
    with ThreadPoolExecutor(max_workers=1) as side:
        at = started + RAMP_SECONDS + 0.3
        stalled = side.submit(stall_redis, pool_stack.redis_url, at, stall) if stall else None
        answers = run_concurrently(calls, threads=REQUESTS)
        took = time.monotonic() - started
        if stalled is not None:
            stalled.result(timeout=ANSWER_WITHIN)

    outcomes: collections.Counter[tuple[int, str]] = collections.Counter()
    values: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for name, resp in answers:
        if resp.status_code == 200:
            body = assert_json(resp, 200)
            values[name].append((body["value"], body["fencing_token"]))
            outcomes[(200, "ok")] += 1
            continue
        code = resp.json().get("error", {}).get("code") if resp.text.startswith("{") else None
        outcomes[(resp.status_code, str(code))] += 1
        if (resp.status_code, code) in REFUSALS:
            assert_error(resp, resp.status_code, code)
            assert resp.headers.get("Retry-After", "").isdigit(), describe(resp)
    print(f"{REQUESTS} locked increments in {took:.1f} s: {dict(outcomes)}")
    unexpected = {k: n for k, n in outcomes.items() if k != (200, "ok") and k not in REFUSALS}
    assert not unexpected, f"answers other than 200, busy or rate_limited: {unexpected}"
    assert outcomes[(200, "ok")] > 0, outcomes

    # Each name counted its 200s exactly: values 1..k in fencing order, none repeated.
    for name in names:
        done = sorted(values[name])
        assert [v for v, _ in done] == list(range(1, len(done) + 1)), (name, done)
        tokens = [t for _, t in done]
        assert all(a < b for a, b in itertools.pairwise(tokens)), (name, done)
        after = assert_json(client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0}), 200)
        assert after["value"] == len(done) + 1, (name, after, done)

    logged = pool_stack.gunicorn_log.read_text(errors="replace")[len(log_before) :]
    for sign in ("backend unavailable", "lease not extended", "had expired"):
        lines = [line for line in logged.splitlines() if sign in line]
        assert not lines, f"{len(lines)} log lines say {sign!r}, e.g. {lines[:3]}"
