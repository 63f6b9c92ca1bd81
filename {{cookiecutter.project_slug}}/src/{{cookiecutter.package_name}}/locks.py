"""A lock that holds across gunicorn workers and hosts, with fencing tokens.

`threading.Lock` and `multiprocessing.Lock` protect nothing between workers
that gunicorn forked independently, and a fixed lock file in /tmp is neither
safe nor shared between hosts. This lock lives in Redis instead.

Why not `redis.lock.Lock`: it keeps its token in a thread-local (another
thread or greenlet using the same instance can release someone else's lock),
has no fencing token, and `extend()` adds to the remaining TTL instead of
resetting it. Here every acquisition gets its own token, a TTL is required,
release and extension compare the token inside Redis, and each acquisition
increments a per-name fence in the same script, so a store can refuse writes
from a holder whose lease has already passed to someone else.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from .errors import ApiError, LockTimeout

# SET NX PX and, only when that succeeded, INCR the fence: one atomic step.
# The fence key has no TTL, so tokens keep increasing across expiries.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""

# Delete or re-arm the lock only while it still holds our token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Write the guarded value only if our token still holds the lock and no newer
# fence has been issued: a stale holder (paused past its TTL) writes nothing.
_WRITE_FENCED = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('SET', KEYS[3], ARGV[3])
  return 1
end
return 0
"""


class LockLost(ApiError):
    def __init__(self, name: str) -> None:
        super().__init__(
            409, "lock_lost", f"Lock {name!r} expired before the write; nothing was written."
        )


@dataclass(frozen=True)
class Lease:
    """One acquisition: the name, its private token and its fencing token."""

    name: str
    token: str
    fence: int


class Locks:
    """What every lock backend shares: `hold`, built on acquire and release."""

    # Errors on release that the lock's own expiry makes harmless.
    release_errors: tuple[type[Exception], ...] = ()

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        raise NotImplementedError

    def release(self, lease: Lease) -> bool:
        raise NotImplementedError

    @contextmanager
    def hold(self, name: str, ttl: float, wait: float) -> Iterator[Lease]:
        lease = self.acquire(name, ttl, wait)
        try:
            yield lease
        finally:
            with contextlib.suppress(*self.release_errors):
                self.release(lease)


class RedisLocks(Locks):
    # If Redis is gone the TTL frees the lock; the original error matters more.
    release_errors = (redis.RedisError,)

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._write = client.register_script(_WRITE_FENCED)

    def _keys(self, name: str) -> tuple[str, str, str]:
        # One hash tag per name keeps all three keys in one Redis Cluster slot.
        base = f"{self._prefix}:lock:" + "{" + name + "}"
        return f"{base}:owner", f"{base}:fence", f"{base}:value"

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        if ttl <= 0:
            raise ValueError("a lock needs a positive TTL")
        owner, fence, _ = self._keys(name)
        token = secrets.token_hex(16)
        result = self._acquire(keys=[owner, fence], args=[token, int(ttl * 1000)])
        return None if result is None else Lease(name, token, int(result))

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        deadline = time.monotonic() + wait
        delay = 0.005
        while True:
            lease = self.try_acquire(name, ttl)
            if lease is not None:
                return lease
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(name, wait)
            # Jittered backoff keeps waiters from polling Redis in lockstep.
            jitter = random.uniform(0.5, 1.5)  # noqa: S311 (timing jitter, not a secret)
            time.sleep(min(left, delay * jitter))
            delay = min(delay * 2, 0.05)

    def release(self, lease: Lease) -> bool:
        owner, _, _ = self._keys(lease.name)
        return bool(self._release(keys=[owner], args=[lease.token]))

    def extend(self, lease: Lease, ttl: float) -> bool:
        """Reset the remaining TTL to `ttl`, only while the lease still holds."""
        owner, _, _ = self._keys(lease.name)
        return bool(self._extend(keys=[owner], args=[lease.token, int(ttl * 1000)]))

    def read_guarded(self, lease: Lease) -> int:
        _, _, value = self._keys(lease.name)
        raw = self._redis.get(value)
        return int(raw) if raw is not None else 0

    def write_guarded(self, lease: Lease, value: int) -> None:
        owner, fence, key = self._keys(lease.name)
        written = self._write(keys=[owner, fence, key], args=[lease.token, lease.fence, value])
        if not written:
            raise LockLost(lease.name)
