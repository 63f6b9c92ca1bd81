"""Shared state that every worker process sees: counters and keys with a TTL.

A module-level dict lives in one gunicorn worker only; the next request may
land in another. State therefore lives in Redis, and every change is one
atomic server-side command (INCRBY, SET PX), never read-then-write in Python.
"""

from __future__ import annotations

from typing import Protocol

import redis

from .errors import unavailable_on

# The Redis errors that mean "Redis did not answer", as opposed to a bug of ours.
REDIS_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class State(Protocol):
    """What every state backend offers (Redis here, SQLite in `embedded`).

    Every method raises `errors.BackendUnavailable` when the backend does not answer.
    """

    def incr(self, name: str, by: int = 1) -> int: ...
    def get_counter(self, name: str) -> int: ...
    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None: ...
    def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool: ...
    def get(self, key: str) -> bytes | None: ...
    def ping(self) -> None: ...


@unavailable_on(*REDIS_UNAVAILABLE)
class RedisState:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    def incr(self, name: str, by: int = 1) -> int:
        return int(self._redis.incrby(self._key("counter", name), by))

    def get_counter(self, name: str) -> int:
        raw = self._redis.get(self._key("counter", name))
        return int(raw) if raw is not None else 0

    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        px = int(ttl * 1000) if ttl is not None else None
        self._redis.set(self._key("kv", key), value, px=px)

    def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        px = int(ttl * 1000) if ttl is not None else None
        return bool(self._redis.set(self._key("kv", key), value, px=px, nx=True))

    def get(self, key: str) -> bytes | None:
        return self._redis.get(self._key("kv", key))

    def ping(self) -> None:
        self._redis.ping()
