"""A lock that holds across gunicorn workers and hosts, with fencing tokens.

`threading.Lock` and `multiprocessing.Lock` protect nothing between workers
that gunicorn forked independently, and a fixed lock file in /tmp is neither
safe nor shared between hosts. This lock lives in Redis instead.

Why not `redis.lock.Lock`: with `thread_local=True`, its default, the token
lives in the acquiring thread's local storage, so a renewal thread (`hold`'s
watchdog) cannot see it and cannot extend the lease; with `thread_local=False`
one token is shared by the instance, and a second thread acquiring through it
overwrites the first one's. It has no fencing token either. Here every
acquisition gets its own token, a TTL is required,
release and extension compare the token inside Redis, and each acquisition
raises a per-name fence in the same script, so data written under the lock
(`write_fenced`) refuses a holder whose lease has passed to someone else.

The lease is short (LOCK_TTL_SECONDS), so a dead holder's lock comes back
within seconds; `hold` runs a watchdog that re-arms it every ttl/3 while the
holder works, as Redisson's does.

A fence that can repeat is no fence, and a count kept in Redis alone repeats
when Redis loses its last writes: a restart without persistence, a failover
to a replica that had not received them (persistence settings narrow that
window, never close it). So each new fence is max(last fence + 1, the
server's clock in microseconds), read with TIME inside the acquiring script
(Redis >= 5 replicates a script's effects, so a write after TIME is allowed).
After any loss the clock still exceeds every fence issued before, as long as:

- the clocks of the Redis servers that can become primary only move forward
  and agree with each other to better than a restart or failover takes;
- a lock is acquired at most once per microsecond on average, so fences stay
  at the clock rather than run ahead of it (one acquisition is a round trip).

Fences are about 1.7e15, below 2**53, so JSON clients that read numbers as
doubles still see them exactly. The embedded backend (`embedded.FileLocks`)
uses the same floor, with the host's clock.

The same floor lets a lock's fence be forgotten: the fence key expires
LOCK_RECORD_TTL_SECONDS after the last acquisition or renewal (each re-arms
it, for longer than the lease, so it outlives every live lease), and a name
used once leaves nothing behind for good. The next fence is then the clock,
which by then has passed every fence issued before: a fence runs ahead of
the clock only by the acquisitions made faster than one a microsecond,
nowhere near a whole TTL.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import redis

from . import metrics
from .errors import BackendUnavailable, Busy, LockLost, LockTimeout, unavailable_on
from .state import REDIS_UNAVAILABLE, as_bytes

# SET NX PX and, only when that succeeded, raise the fence: one atomic step.
# The new fence is max(last + 1, TIME in microseconds), so it keeps increasing
# even after Redis lost or expired the fence key (see the module docstring); the
# fence key lives ARGV[3] ms from here. Lua's tostring would print the clock as
# 1.7e+15, so the digits are joined as strings; every number here is below 2**53,
# exact as a Lua double.
ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < now then
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), 'PX', ARGV[3])
  return now
end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return fence
"""

# Delete or re-arm the lock only while it still holds our token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Re-arming a lease re-arms its fence too, which therefore outlives the lease.
EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Write only if our token still holds the lock and no newer fence has been
# issued: a stale holder (paused past its TTL) writes nothing.
WRITE_FENCED = """
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


log = logging.getLogger(__name__)

# How long a lock's own records outlive its last use, unless told (config's
# LOCK_RECORD_TTL_SECONDS).
RECORD_TTL_SECONDS = 86400.0


class LockKeys:
    """Every Redis key of a lock, for the sync and the async twin alike.

    One hash tag per name keeps them in one Redis Cluster slot, as the scripts
    that touch several of them require.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _base(self, name: str) -> str:
        return f"{self.prefix}:lock:" + "{" + name + "}"

    def owner(self, name: str) -> str:
        return f"{self._base(name)}:owner"

    def fence(self, name: str) -> str:
        return f"{self._base(name)}:fence"

    def data(self, name: str, key: str) -> str:
        return f"{self._base(name)}:data:{key}"


def backoff() -> Iterator[float]:
    """The pauses between tries for a busy lock, for every backend and both twins.

    Doubling from 5 ms to at most 50 ms, each jittered by x0.5 to x1.5 so that
    waiters do not poll the backend in lockstep.
    """
    delay = 0.005
    while True:
        yield delay * random.uniform(0.5, 1.5)  # noqa: S311 (timing jitter, not a secret)
        delay = min(delay * 2, 0.05)


def renewal_period(ttl: float) -> float:
    """How often a held lease is re-armed to its full TTL: three tries per lease."""
    return ttl / 3


def new_token() -> str:
    """A private token per acquisition; it names its holder (host, pid), so an
    operator reading the lock key sees who holds it."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(16)}"


@contextlib.contextmanager
def waiting_counted() -> Iterator[None]:
    """Time an acquisition inside for the metrics, and count it if it timed out
    (both twins' `hold`); one the backend failed is neither."""
    started = time.monotonic()
    try:
        yield
    except LockTimeout:
        metrics.lock_waited(time.monotonic() - started, timed_out=True)
        raise
    metrics.lock_waited(time.monotonic() - started)


class Holding:
    """`hold`, the same for every backend: acquire, keep alive, always release."""

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        raise NotImplementedError

    def release(self, lease: Lease) -> bool:
        raise NotImplementedError

    def extend(self, lease: Lease, ttl: float) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold(self, name: str, ttl: float, wait: float) -> Iterator[Lease]:
        with waiting_counted():
            lease = self.acquire(name, ttl, wait)
        watchdog = Watchdog(self, lease, ttl)
        try:
            watchdog.start()
            yield lease
        finally:
            # Stopped before the release, so it never re-arms a lease given back.
            watchdog.stop()
            # If the backend is gone, or has no free connection, the TTL frees the lock;
            # the holder's own outcome (its write done, or its error) matters more.
            with contextlib.suppress(BackendUnavailable, Busy):
                self.release(lease)


class Watchdog:
    """Keeps one lease alive while its holder works: re-arms it to `ttl` every ttl/3.

    The lease can then be short, so a dead holder's lock comes back within
    seconds, while a living holder keeps it however long it works. The
    re-arming runs on the process's one renewal thread (`_Renewals`): under
    gevent, gunicorn's worker patches `threading` into greenlets, which wake
    while the holder waits on I/O or sleeps. If the lease is found lost, the
    watchdog stops and says so; the holder's `write_fenced` refuses on its own.
    If the backend does not answer, it tries again at the next tick: the lease
    may well still be alive. Renewals have connections of their own
    (`backend.RENEWAL_CONNECTIONS`), so requests waiting for one never delay them.
    """

    def __init__(self, locks: Holding, lease: Lease, ttl: float) -> None:
        self.lease = lease
        self.ttl = ttl
        # Why the lease could not be re-armed, last time it could not; None if it always was.
        self.failure: str | None = None
        self.extensions = 0
        self._locks = locks
        self._stopped = False

    def start(self) -> None:
        _renewals().add(self, time.monotonic() + renewal_period(self.ttl))

    def stop(self) -> None:
        """No more extensions; waits for the one in flight, if any."""
        _renewals().remove(self)

    @property
    def running(self) -> bool:
        """Whether an extension is still scheduled or in flight."""
        return _renewals().holds(self)

    def tick(self) -> bool:
        """Re-arm the lease once; False once there is no point trying again."""
        try:
            extended = self._locks.extend(self.lease, self.ttl)
        except (BackendUnavailable, Busy) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.warning("lock %r: lease not extended, will retry: %s", self.lease.name, exc)
            return True
        except Exception as exc:  # on the renewal thread it would go unseen: record it, stop
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("lock %r: the lease watchdog failed", self.lease.name)
            return False
        if not extended:
            self.failure = "the lease had expired or passed to another holder"
            log.warning("lock %r: %s", self.lease.name, self.failure)
            return False
        self.extensions += 1
        return True


class _Renewals:
    """One thread per process re-arms every lease its holders keep, each when due.

    A thread of its own per hold would cost a start and a join inside every
    critical section, which contended locks pay in throughput. Extensions run one
    at a time; a backend slow to answer one would have failed the others too.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: dict[Watchdog, float] = {}
        self._in_flight: Watchdog | None = None
        self._thread: threading.Thread | None = None
        # When the thread wakes next by itself; it is woken early only for a lease
        # due before that (waking it at every hold cost as much as a thread each).
        self._wakes_at = math.inf

    def add(self, watchdog: Watchdog, due: float) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lock-watchdog", daemon=True)
                self._thread.start()
            watchdog._stopped = False
            self._due[watchdog] = due
            if due < self._wakes_at:
                self._changed.notify_all()

    def remove(self, watchdog: Watchdog) -> None:
        with self._changed:
            watchdog._stopped = True
            self._due.pop(watchdog, None)
            # At most one extension in flight, and never one after this returns.
            while self._in_flight is watchdog:
                self._changed.wait()

    def holds(self, watchdog: Watchdog) -> bool:
        with self._changed:
            return watchdog in self._due or self._in_flight is watchdog

    def count(self) -> int:
        with self._changed:
            return len(self._due) + (self._in_flight is not None)

    def _next(self) -> Watchdog:
        with self._changed:
            while True:
                now = time.monotonic()
                if self._due:
                    watchdog, due = min(self._due.items(), key=lambda item: item[1])
                    if due <= now:
                        del self._due[watchdog]
                        self._in_flight = watchdog
                        self._wakes_at = math.inf
                        return watchdog
                    self._wakes_at = due
                    self._changed.wait(due - now)
                else:
                    self._wakes_at = math.inf
                    self._changed.wait()

    def _run(self) -> None:
        while True:
            watchdog = self._next()
            again = False
            try:
                again = watchdog.tick()
            finally:
                with self._changed:
                    self._in_flight = None
                    if again and not watchdog._stopped:
                        self._due[watchdog] = time.monotonic() + renewal_period(watchdog.ttl)
                    self._changed.notify_all()


_process_renewals = _Renewals()


def _renewals() -> _Renewals:
    return _process_renewals


def _renew_anew_after_fork() -> None:
    # A forked child has no renewal thread, and its leases are its own.
    global _process_renewals
    _process_renewals = _Renewals()


os.register_at_fork(after_in_child=_renew_anew_after_fork)


def renewing() -> int:
    """How many leases this process is keeping alive right now."""
    return _renewals().count()


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError("a lock needs a positive TTL")


def lease_args(ttl: float, record_ttl: float) -> list[int]:
    """ACQUIRE's and EXTEND's times: the lease's, and its fence's, which outlives it."""
    return [int(ttl * 1000), int(max(ttl, record_ttl) * 1000)]


@unavailable_on(*REDIS_UNAVAILABLE)
class RedisLocks(Holding):
    """Locks on `client`; extensions on `renewals` (by default `client` too)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        renewals: redis.Redis | None = None,
        record_ttl: float = RECORD_TTL_SECONDS,
    ) -> None:
        self._redis = client
        self._keys = LockKeys(prefix)
        self._record_ttl = record_ttl
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._extend = (renewals or client).register_script(EXTEND)
        self._write = client.register_script(WRITE_FENCED)

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        check_ttl(ttl)
        token = new_token()
        keys = [self._keys.owner(name), self._keys.fence(name)]
        result = self._acquire(keys=keys, args=[token, *lease_args(ttl, self._record_ttl)])
        return None if result is None else Lease(name, token, int(result))

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        deadline = time.monotonic() + wait
        for pause in backoff():
            lease = self.try_acquire(name, ttl)
            if lease is not None:
                return lease
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(name, wait)
            time.sleep(min(left, pause))
        raise AssertionError("backoff() never ends")

    def release(self, lease: Lease) -> bool:
        return bool(self._release(keys=[self._keys.owner(lease.name)], args=[lease.token]))

    def extend(self, lease: Lease, ttl: float) -> bool:
        """Reset the remaining TTL to `ttl`, only while the lease still holds."""
        check_ttl(ttl)
        keys = [self._keys.owner(lease.name), self._keys.fence(lease.name)]
        args: list[str | int] = [lease.token, *lease_args(ttl, self._record_ttl)]
        return bool(self._extend(keys=keys, args=args))

    def read_fenced(self, name: str, key: str) -> bytes | None:
        return as_bytes(self._redis.get(self._keys.data(name, key)))

    def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        name = lease.name
        keys = [self._keys.owner(name), self._keys.fence(name), self._keys.data(name, key)]
        if not self._write(keys=keys, args=[lease.token, lease.fence, value]):
            raise LockLost(lease.name)
