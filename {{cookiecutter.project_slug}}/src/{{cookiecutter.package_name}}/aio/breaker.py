"""Async twins of `breaker`'s guarded state and locks, over the same `Breaker`.

The breaker's lock guards a few assignments, never a backend call, so the
sync `Breaker` serves the loop as it is: its `guard` wraps the awaited call.
"""

from __future__ import annotations

from ..breaker import Breaker
from ..locks import Lease
from .locks import AsyncHolding, AsyncLocks
from .state import AsyncState


class GuardedAsyncState:
    """An `AsyncState` whose every call goes through the worker's breaker."""

    def __init__(self, state: AsyncState, breaker: Breaker) -> None:
        self._state = state
        self._breaker = breaker

    async def incr(self, name: str, by: int = 1) -> int:
        with self._breaker.guard("state.incr"):
            return await self._state.incr(name, by)

    async def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        with self._breaker.guard("state.incr_once"):
            return await self._state.incr_once(name, by, key, ttl)

    async def get_counter(self, name: str) -> int:
        with self._breaker.guard("state.get_counter"):
            return await self._state.get_counter(name)

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        with self._breaker.guard("state.set"):
            await self._state.set(key, value, ttl)

    async def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        with self._breaker.guard("state.set_if_absent"):
            return await self._state.set_if_absent(key, value, ttl)

    async def get(self, key: str) -> bytes | None:
        with self._breaker.guard("state.get"):
            return await self._state.get(key)

    async def ping(self) -> None:
        with self._breaker.guard("state.ping"):
            await self._state.ping()


class GuardedAsyncLocks(AsyncHolding):
    """An `AsyncLocks` whose calls go through the worker's breaker; `acquire` and
    `hold` are AsyncHolding's, so each try, extension and release is guarded."""

    def __init__(self, locks: AsyncLocks, breaker: Breaker) -> None:
        self._locks = locks
        self._breaker = breaker

    async def try_acquire(self, name: str, ttl: float) -> Lease | None:
        with self._breaker.guard("locks.try_acquire"):
            return await self._locks.try_acquire(name, ttl)

    async def release(self, lease: Lease) -> bool:
        # Always tried, never refused by an open breaker: a flock (embedded backend)
        # is freed only by its holder, and a Redis lock would wait out its TTL.
        with self._breaker.guard("locks.release", refuse=False):
            return await self._locks.release(lease)

    async def extend(self, lease: Lease, ttl: float) -> bool:
        with self._breaker.guard("locks.extend"):
            return await self._locks.extend(lease, ttl)

    async def read_fenced(self, name: str, key: str) -> bytes | None:
        with self._breaker.guard("locks.read_fenced"):
            return await self._locks.read_fenced(name, key)

    async def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        with self._breaker.guard("locks.write_fenced"):
            await self._locks.write_fenced(lease, key, value)
