"""The Redis lock's promises, checked against the stack's real Redis.

These are the places where redis-py's own Lock falls short (a thread-local
token, no fencing, extend adds to the TTL), so each gets a test of its own.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import redis

from {{ cookiecutter.package_name }}.errors import LockLost, LockTimeout
from {{ cookiecutter.package_name }}.locks import RedisLocks


@pytest.fixture(scope="module")
def locks(request: pytest.FixtureRequest) -> RedisLocks:
    if os.environ.get("STACK_BACKEND", "").strip() not in {"", "redis"}:
        pytest.skip("checks the Redis lock; this run's stacks use the embedded backend")
    stack = request.getfixturevalue("stack")
    return RedisLocks(redis.Redis.from_url(stack.redis_url), f"test-{uuid.uuid4().hex[:8]}")


def test_another_lease_cannot_release_or_extend_the_lock(locks):
    mine = locks.acquire("a", ttl=5, wait=0)
    other = type(mine)(mine.name, "not-the-token", mine.fence)
    assert not locks.release(other)
    assert not locks.extend(other, 60)
    assert locks.try_acquire("a", ttl=5) is None, "the lock was freed by a stranger"
    assert locks.release(mine)


def test_a_lease_is_not_tied_to_the_thread_that_took_it(locks):
    lease = locks.acquire("b", ttl=5, wait=0)
    released = []
    helper = threading.Thread(target=lambda: released.append(locks.release(lease)))
    helper.start()
    helper.join()
    assert released == [True]


def test_extend_resets_the_ttl_instead_of_adding_to_it(locks):
    lease = locks.acquire("c", ttl=10, wait=0)
    assert locks.extend(lease, 2)
    owner_key = locks._keys.owner("c")
    assert locks._redis.pttl(owner_key) <= 2000
    locks.release(lease)


def test_fences_increase_across_expiry_and_a_stale_holder_writes_nothing(locks):
    stale = locks.acquire("d", ttl=0.2, wait=0)
    time.sleep(0.3)  # the lease expires while its holder is "paused"
    fresh = locks.acquire("d", ttl=5, wait=0)
    assert fresh.fence > stale.fence
    with pytest.raises(LockLost):
        locks.write_fenced(stale, "v", "100")
    locks.write_fenced(fresh, "v", "1")
    assert locks.read_fenced("d", "v") == b"1"
    locks.release(fresh)


def test_a_busy_lock_times_out_after_the_wait(locks):
    held = locks.acquire("e", ttl=5, wait=0)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        locks.acquire("e", ttl=5, wait=0.3)
    assert 0.25 < time.monotonic() - started < 2
    locks.release(held)


def test_a_lock_needs_a_ttl(locks):
    with pytest.raises(ValueError):
        locks.try_acquire("f", ttl=0)
