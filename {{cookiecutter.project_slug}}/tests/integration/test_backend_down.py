"""With Redis stopped the service answers 503 quickly, and recovers by itself once Redis is back."""

from __future__ import annotations

import os
import signal
import time

from client import Client, assert_error, assert_json, run_concurrently, unique

# REDIS_TIMEOUT_SECONDS is 1 on this stack; an answer may take a little longer than that.
ANSWER_WITHIN = 5.0


def timed(call):
    started = time.monotonic()
    resp = call()
    took = time.monotonic() - started
    assert took < ANSWER_WITHIN, (
        f"answered after {took:.1f}s: {resp.status_code} {resp.text[:200]!r}"
    )
    return resp


def poll_until_ready(client: Client, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        ready = client.get("/readyz", timeout=ANSWER_WITHIN)
        incr = client.post(f"/api/counters/{name}/incr", timeout=ANSWER_WITHIN)
        last = (ready.status_code, ready.text[:200], incr.status_code, incr.text[:200])
        if ready.status_code == 200 and incr.status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready {seconds}s after Redis came back: {last}")


def test_backend_down_then_back(redis_stack) -> None:
    client = Client(redis_stack.base_url)
    name = unique("outage")
    assert_json(client.get("/readyz"), 200)
    assert_json(client.post(f"/api/counters/{name}/incr"), 200)

    redis_stack.stop_redis()
    try:
        for _ in range(3):  # several tries, so more than one worker shows its answer
            body = assert_json(timed(lambda: client.get("/readyz")), 503)
            assert body["status"] == "unavailable", body
            assert isinstance(body["checks"]["state"], str) and body["checks"]["state"] != "ok", (
                body
            )
            assert_error(
                timed(lambda: client.post(f"/api/counters/{name}/incr")), 503, "backend_unavailable"
            )
            assert_error(
                timed(lambda: client.get(f"/api/counters/{name}")), 503, "backend_unavailable"
            )
            resp = timed(lambda: client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0}))
            assert_error(resp, 503, "backend_unavailable")
            assert assert_json(timed(lambda: client.get("/healthz")), 200)["status"] == "ok"
    finally:
        redis_stack.start_redis()

    poll_until_ready(client, unique("recovered"), seconds=10)
    # Every worker, not only the one that answered the poll, must have recovered.
    fresh = unique("after")
    answers = run_concurrently(
        [lambda: assert_json(client.post(f"/api/counters/{fresh}/incr"), 200) for _ in range(20)],
        threads=8,
    )
    assert sorted(a["value"] for a in answers) == list(range(1, 21))
    assert_json(client.post(f"/api/locked-increment/{fresh}", json={"hold_ms": 0}), 200)


def test_paused_redis_is_a_quick_503_not_a_hung_worker(redis_stack) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP): socket timeouts fire."""
    client = Client(redis_stack.base_url)
    name = unique("paused")
    assert_json(client.post(f"/api/counters/{name}/incr"), 200)
    redis_pid = redis_stack.pids()["redis-server"]
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            assert_error(
                timed(lambda: client.post(f"/api/counters/{name}/incr")), 503, "backend_unavailable"
            )
            assert assert_json(timed(lambda: client.get("/readyz")), 503)["status"] == "unavailable"
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    poll_until_ready(client, name, 10)
