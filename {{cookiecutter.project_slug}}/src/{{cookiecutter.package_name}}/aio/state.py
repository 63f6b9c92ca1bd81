"""Async twins of `state`: the same Protocol, keys and Lua scripts, awaited."""

from __future__ import annotations

from typing import Protocol

import redis.asyncio

from ..errors import IdempotencyKeyReused, unavailable_on
from ..state import (
    BIND_KEY,
    INCR_ONCE,
    REDIS_UNAVAILABLE,
    State,
    StateKeys,
    as_bytes,
    bound_request,
    ttl_ms,
)
from .offload import Offload


class AsyncState(Protocol):
    """`state.State`, awaited: the same methods, parameters and errors."""

    async def incr(self, name: str, by: int = 1) -> int: ...
    async def incr_once(self, name: str, by: int, key: str, ttl: float) -> int: ...
    async def get_counter(self, name: str) -> int: ...
    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None: ...
    async def set_if_absent(
        self, key: str, value: bytes | str, ttl: float | None = None
    ) -> bool: ...
    async def get(self, key: str) -> bytes | None: ...
    async def ping(self) -> None: ...


@unavailable_on(*REDIS_UNAVAILABLE)
class AsyncRedisState:
    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        self._redis = client
        self._keys = StateKeys(prefix)
        self._bind = client.register_script(BIND_KEY)
        self._incr = client.register_script(INCR_ONCE)

    async def incr(self, name: str, by: int = 1) -> int:
        return int(await self._redis.incrby(self._keys.counter(name), by))

    async def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        # The two steps of `state.IncrOnce`, in the same order, with the same keys.
        px = ttl_ms(ttl)
        if not await self._bind(keys=[self._keys.binding(key)], args=[bound_request(name, by), px]):
            raise IdempotencyKeyReused()
        keys = [self._keys.counter(name), self._keys.done(name, key)]
        return int(await self._incr(keys=keys, args=[by, px]))

    async def get_counter(self, name: str) -> int:
        raw = await self._redis.get(self._keys.counter(name))
        return int(raw) if raw is not None else 0

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        px = int(ttl * 1000) if ttl is not None else None
        await self._redis.set(self._keys.kv(key), value, px=px)

    async def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        px = int(ttl * 1000) if ttl is not None else None
        return bool(await self._redis.set(self._keys.kv(key), value, px=px, nx=True))

    async def get(self, key: str) -> bytes | None:
        return as_bytes(await self._redis.get(self._keys.kv(key)))

    async def ping(self) -> None:
        await self._redis.ping()


class OffloadedState:
    """A sync `State` (the embedded SQLite one) whose every call runs on `offload`."""

    def __init__(self, state: State, offload: Offload) -> None:
        self._state = state
        self._offload = offload

    async def incr(self, name: str, by: int = 1) -> int:
        return await self._offload(self._state.incr, name, by)

    async def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        return await self._offload(self._state.incr_once, name, by, key, ttl)

    async def get_counter(self, name: str) -> int:
        return await self._offload(self._state.get_counter, name)

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        await self._offload(self._state.set, key, value, ttl)

    async def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        return await self._offload(self._state.set_if_absent, key, value, ttl)

    async def get(self, key: str) -> bytes | None:
        return await self._offload(self._state.get, key)

    async def ping(self) -> None:
        await self._offload(self._state.ping)
