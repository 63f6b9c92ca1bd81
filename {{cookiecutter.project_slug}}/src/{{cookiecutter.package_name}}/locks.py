"""A lock that holds across gunicorn workers and hosts, with fencing tokens.

`threading.Lock` and `multiprocessing.Lock` protect nothing between workers
that gunicorn forked independently, and a fixed lock file in /tmp is neither
safe nor shared between hosts. This lock lives in Redis instead.

Why not `redis.lock.Lock`: it keeps its token in a thread-local (another
thread or greenlet using the same instance can release someone else's lock),
has no fencing token, and `extend()` adds to the remaining TTL instead of
resetting it. Here every acquisition gets its own token, a TTL is required,
release and extension compare the token inside Redis, and each acquisition
increments a per-name fence in the same script, so data written under the
lock (`write_fenced`) refuses a holder whose lease has passed to someone else.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import redis

from .errors import BackendUnavailable, LockLost, LockTimeout, unavailable_on
from .state import REDIS_UNAVAILABLE

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

# Write only if our token still holds the lock and no newer fence has been
# issued: a stale holder (paused past its TTL) writes nothing.
_WRITE_FENCED = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('SET', KEYS[3], ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """One acquisition: the name, its private token and its fencing token."""

    name: str
    token: str
    fence: int


class Locks(Protocol):
    """What every lock backend offers (Redis here, flock + SQLite in `embedded`).

    Every method raises `errors.BackendUnavailable` when the backend does not answer.
    """

    def try_acquire(self, name: str, ttl: float) -> Lease | None: ...
    def acquire(self, name: str, ttl: float, wait: float) -> Lease: ...
    def release(self, lease: Lease) -> bool: ...
    def extend(self, lease: Lease, ttl: float) -> bool: ...
    def hold(self, name: str, ttl: float, wait: float) -> AbstractContextManager[Lease]: ...
    def read_fenced(self, name: str, key: str) -> bytes | None: ...
    def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None: ...


class Holding:
    """`hold`, the same for every backend: acquire, yield, always release."""

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        raise NotImplementedError

    def release(self, lease: Lease) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold(self, name: str, ttl: float, wait: float) -> Iterator[Lease]:
        lease = self.acquire(name, ttl, wait)
        try:
            yield lease
        finally:
            # If the backend is gone the TTL frees the lock; the original error matters more.
            with contextlib.suppress(BackendUnavailable):
                self.release(lease)


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError("a lock needs a positive TTL")


@unavailable_on(*REDIS_UNAVAILABLE)
class RedisLocks(Holding):
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._write = client.register_script(_WRITE_FENCED)

    def _base(self, name: str) -> str:
        # One hash tag per name keeps every key of a lock in one Redis Cluster slot.
        return f"{self._prefix}:lock:" + "{" + name + "}"

    def _keys(self, name: str) -> tuple[str, str]:
        base = self._base(name)
        return f"{base}:owner", f"{base}:fence"

    def _data_key(self, name: str, key: str) -> str:
        return f"{self._base(name)}:data:{key}"

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        check_ttl(ttl)
        token = secrets.token_hex(16)
        result = self._acquire(keys=list(self._keys(name)), args=[token, int(ttl * 1000)])
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
        owner, _ = self._keys(lease.name)
        return bool(self._release(keys=[owner], args=[lease.token]))

    def extend(self, lease: Lease, ttl: float) -> bool:
        """Reset the remaining TTL to `ttl`, only while the lease still holds."""
        check_ttl(ttl)
        owner, _ = self._keys(lease.name)
        return bool(self._extend(keys=[owner], args=[lease.token, int(ttl * 1000)]))

    def read_fenced(self, name: str, key: str) -> bytes | None:
        return self._redis.get(self._data_key(name, key))

    def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        owner, fence = self._keys(lease.name)
        data = self._data_key(lease.name, key)
        written = self._write(keys=[owner, fence, data], args=[lease.token, lease.fence, value])
        if not written:
            raise LockLost(lease.name)
