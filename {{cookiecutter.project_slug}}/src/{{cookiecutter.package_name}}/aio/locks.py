"""Async twins of `locks`: the same Protocol, keys, Lua scripts and fencing, awaited.

Why not redis.asyncio's `Lock`: it keeps its token in a thread-local, and
every task on a loop runs in one thread, so one task can release another's
lock; it has no fence either. Here, as in the sync twin, each acquisition is
a new `Lease` with its own token, never a lock object shared between tasks.
A busy lock is waited for with `asyncio.sleep` on the sync twin's backoff
schedule, and a held lease is re-armed by a task, not a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import redis.asyncio

from ..errors import BackendUnavailable, Busy, LockLost, LockTimeout, unavailable_on
from ..locks import (
    ACQUIRE,
    EXTEND,
    RECORD_TTL_SECONDS,
    RELEASE,
    WRITE_FENCED,
    Lease,
    LockKeys,
    Locks,
    backoff,
    check_ttl,
    lease_args,
    new_token,
    renewal_period,
    waiting_counted,
)
from ..state import REDIS_UNAVAILABLE, as_bytes
from .offload import Offload

log = logging.getLogger(__name__)


class AsyncLocks(Protocol):
    """`locks.Locks`, awaited: the same methods, parameters and errors."""

    async def try_acquire(self, name: str, ttl: float) -> Lease | None: ...
    async def acquire(self, name: str, ttl: float, wait: float) -> Lease: ...
    async def release(self, lease: Lease) -> bool: ...
    async def extend(self, lease: Lease, ttl: float) -> bool: ...
    def hold(self, name: str, ttl: float, wait: float) -> AbstractAsyncContextManager[Lease]: ...
    async def read_fenced(self, name: str, key: str) -> bytes | None: ...
    async def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None: ...


class AsyncHolding:
    """`acquire` and `hold`, the same for every async backend, over its `try_acquire`."""

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        raise NotImplementedError

    async def release(self, lease: Lease) -> bool:
        raise NotImplementedError

    async def extend(self, lease: Lease, ttl: float) -> bool:
        raise NotImplementedError

    async def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        deadline = time.monotonic() + wait
        for pause in backoff():
            lease = await self.try_acquire(name, ttl)
            if lease is not None:
                return lease
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(name, wait)
            await asyncio.sleep(min(left, pause))
        raise AssertionError("backoff() never ends")

    @contextlib.asynccontextmanager
    async def hold(self, name: str, ttl: float, wait: float) -> AsyncIterator[Lease]:
        with waiting_counted():
            lease = await self.acquire(name, ttl, wait)
        watchdog = AsyncWatchdog(self, lease, ttl)
        try:
            watchdog.start()
            yield lease
        finally:
            # Stopped before the release, so it never re-arms a lease given back.
            await watchdog.stop()
            # If the backend is gone, or has no free connection, the TTL frees the lock;
            # the holder's own outcome (its write done, or its error) matters more.
            with contextlib.suppress(BackendUnavailable, Busy):
                await self.release(lease)


class AsyncWatchdog:
    """`locks.Watchdog` on the event loop: re-arms one lease to `ttl` every ttl/3 while held.

    A timer, not a task per hold: a hold shorter than ttl/3 (nearly all) costs one
    `call_later` and its cancel, and its release follows at once. A task awaited
    at the end of every hold would keep the lock held for two more turns of the
    loop, each running every other ready callback first, which contended locks
    pay in throughput. An extension under way is
    awaited by `stop`, never cancelled, so it finishes instead of being cut off
    mid-command.
    """

    def __init__(self, locks: AsyncHolding, lease: Lease, ttl: float) -> None:
        self.lease = lease
        self.ttl = ttl
        # Why the lease could not be re-armed, last time it could not; None if it always was.
        self.failure: str | None = None
        self.extensions = 0
        self._locks = locks
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._extending: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._arm()

    async def stop(self) -> None:
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._extending is not None:
            await self._extending

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(renewal_period(self.ttl), self._due)

    def _due(self) -> None:
        self._timer = None
        self._extending = asyncio.get_running_loop().create_task(
            self._extend(), name=f"lock-watchdog {self.lease.name}"
        )

    async def _extend(self) -> None:
        try:
            extended = await self._locks.extend(self.lease, self.ttl)
        except (BackendUnavailable, Busy) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.warning("lock %r: lease not extended, will retry: %s", self.lease.name, exc)
        except Exception as exc:  # in a task nobody awaits yet: record it, stop
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("lock %r: the lease watchdog failed", self.lease.name)
            return
        else:
            if not extended:
                self.failure = "the lease had expired or passed to another holder"
                log.warning("lock %r: %s", self.lease.name, self.failure)
                return
            self.extensions += 1
        if not self._stopping:
            self._arm()


@unavailable_on(*REDIS_UNAVAILABLE)
class AsyncRedisLocks(AsyncHolding):
    """Locks on `client`; extensions on `renewals` (by default `client` too)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        *,
        renewals: redis.asyncio.Redis | None = None,
        record_ttl: float = RECORD_TTL_SECONDS,
    ) -> None:
        self._redis = client
        self._keys = LockKeys(prefix)
        self._record_ttl = record_ttl
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._extend = (renewals or client).register_script(EXTEND)
        self._write = client.register_script(WRITE_FENCED)

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        check_ttl(ttl)
        token = new_token()
        keys = [self._keys.owner(name), self._keys.fence(name)]
        result = await self._acquire(keys=keys, args=[token, *lease_args(ttl, self._record_ttl)])
        return None if result is None else Lease(name, token, int(result))

    async def release(self, lease: Lease) -> bool:
        owner = self._keys.owner(lease.name)
        return bool(await self._release(keys=[owner], args=[lease.token]))

    async def extend(self, lease: Lease, ttl: float) -> bool:
        """Reset the remaining TTL to `ttl`, only while the lease still holds."""
        check_ttl(ttl)
        keys = [self._keys.owner(lease.name), self._keys.fence(lease.name)]
        args: list[str | int] = [lease.token, *lease_args(ttl, self._record_ttl)]
        return bool(await self._extend(keys=keys, args=args))

    async def read_fenced(self, name: str, key: str) -> bytes | None:
        return as_bytes(await self._redis.get(self._keys.data(name, key)))

    async def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        name = lease.name
        keys = [self._keys.owner(name), self._keys.fence(name), self._keys.data(name, key)]
        if not await self._write(keys=keys, args=[lease.token, lease.fence, value]):
            raise LockLost(lease.name)


class OffloadedLocks(AsyncHolding):
    """A sync `Locks` (the embedded flock one) whose calls run on `offload`.

    `acquire` is AsyncHolding's: a non-blocking try on the pool, then
    `asyncio.sleep`, so a wait for a busy lock holds no thread at all.
    """

    def __init__(self, locks: Locks, offload: Offload) -> None:
        self._locks = locks
        self._offload = offload

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        attempt = asyncio.ensure_future(self._offload(self._locks.try_acquire, name, ttl))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The thread goes on, and may take the flock, which only its holder can
            # free: whatever it takes is given back as soon as it has it.
            attempt.add_done_callback(self._give_back)
            raise

    def _give_back(self, attempt: asyncio.Future[Lease | None]) -> None:
        if not attempt.cancelled() and attempt.exception() is None and attempt.result():
            self._offload.submit(self._locks.release, attempt.result())

    async def release(self, lease: Lease) -> bool:
        return await self._offload(self._locks.release, lease)

    async def extend(self, lease: Lease, ttl: float) -> bool:
        return await self._offload(self._locks.extend, lease, ttl)

    async def read_fenced(self, name: str, key: str) -> bytes | None:
        return await self._offload(self._locks.read_fenced, name, key)

    async def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        await self._offload(self._locks.write_fenced, lease, key, value)
