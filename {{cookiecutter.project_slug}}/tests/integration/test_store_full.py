"""Redis at its memory limit: 507 on the writes that need room, everything else answers.

A stack of its own, whose Redis is given a `maxmemory` a little above what it
holds (with `noeviction`, as compose's Redis runs), is filled with new
counters until it refuses one. From then on every write that needs room is
507 `insufficient_storage` in the one error shape, and nothing else fails:
reads, the health checks, exports and tasks (whose rate limit cannot be
counted then, and lets them through as when Redis is down) answer as before,
and no worker's breaker opens (a full Redis answers; it is not down). Given
room again, writes succeed at once.
"""

from __future__ import annotations

import pytest
import redis
from client import Client, assert_error, assert_json, describe, unique
from stacks import BACKEND, own_stack_or_skip

# Room above what Redis holds when the limit is set: a few thousand counters at most.
HEADROOM_BYTES = 128 * 1024
# Far more new counters than that headroom holds: the loop ends at the first 507.
MOST_WRITES = 20_000
FULL = (507, "insufficient_storage")

# The template's CI runs this module on each framework's default worker class only:
# the refusal comes from Redis and its mapping to 507 is the toolkit's, whatever class.
pytestmark = pytest.mark.same_for_every_worker_class


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory):
    if BACKEND != "redis":
        pytest.skip("fills Redis to its maxmemory; this run's stacks use the embedded backend")
    env = {"WEB_CONCURRENCY": "2"}
    with own_stack_or_skip(tmp_path_factory, "redis-full", env) as started:
        yield started


def counter(client: Client, name: str) -> int:
    return assert_json(client.get(f"/api/counters/{name}"), 200)["value"]


def test_a_full_redis_refuses_writes_with_507_and_serves_the_rest(full_stack) -> None:
    client = Client(full_stack.base_url)
    store = redis.Redis.from_url(full_stack.redis_url)
    kept = unique("kept")
    assert_json(client.post(f"/api/counters/{kept}/incr", json={"by": 5}), 200)

    store.config_set("maxmemory-policy", "noeviction")
    store.config_set("maxmemory", int(store.info("memory")["used_memory"]) + HEADROOM_BYTES)
    try:
        written = 0
        for _ in range(MOST_WRITES):
            resp = client.post(f"/api/counters/{unique('fill')}/incr")
            if resp.status_code != 200:
                break
            written += 1
        assert_error(resp, *FULL)
        assert written > 0, "the first counter was already refused: the headroom is too small"
        # Full from here on: Redis's use moves by a few bytes around the limit (keys that
        # expire, connection buffers), so the limit is pinned below what it holds.
        store.config_set("maxmemory", 1)

        # Every write that needs room: a new counter, one that exists, a retry-safe
        # one, and a locked increment (its lock needs a key).
        key = unique("key")
        assert_error(client.post(f"/api/counters/{unique('new')}/incr"), *FULL)
        assert_error(client.post(f"/api/counters/{kept}/incr"), *FULL)
        headers = {"Idempotency-Key": key}
        assert_error(client.post(f"/api/counters/{kept}/incr", headers=headers), *FULL)
        assert_error(client.post(f"/api/locked-increment/{unique('lk')}", json={}), *FULL)

        # What needs no room goes on: reads, health, exports and tasks.
        assert counter(client, kept) == 5
        for path in ("/healthz", "/readyz", "/api/worker"):
            assert client.get(path).status_code == 200, path
        export = client.post("/api/exports", json={"size_bytes": 1000, "label": "full"})
        assert export.status_code == 201, describe(export)
        task = client.post("/api/tasks/run", json={"task": "exit", "code": 3})
        assert assert_json(task, 200)["returncode"] == 3, describe(task)
    finally:
        store.config_set("maxmemory", 0)

    # Room again: writes succeed at once, on every worker (no breaker was opened).
    for _ in range(10):
        assert_json(client.post(f"/api/counters/{kept}/incr"), 200)
    assert counter(client, kept) == 15
