"""Shared state that every worker process sees: counters and keys with a TTL.

A module-level dict lives in one gunicorn worker only; the next request may
land in another. State therefore lives in Redis, and every change is one
atomic server-side command (INCRBY, SET PX, or a Lua script), never
read-then-write in Python.

An increment that timed out may still have counted (Redis runs what it had
received once it resumes), so a client cannot tell whether to retry.
`incr_once` makes the retry safe: an Idempotency-Key is bound to its first
request, and the increment runs at most once per key within its lifetime;
a retry gets the first answer back.
"""

from __future__ import annotations

from typing import Protocol

import redis

from .errors import IdempotencyKeyReused, unavailable_on

# The Redis errors that mean "Redis did not answer", as opposed to a bug of ours.
# OutOfMemoryError (Redis at maxmemory, refusing a write) becomes errors.StoreFull.
REDIS_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.OutOfMemoryError,
)

# Bind an Idempotency-Key to its request ("<counter> <by>") for the key's lifetime:
# the first binding wins, the same request again is let on, any other is refused (0).
BIND_KEY = """
local bound = redis.call('GET', KEYS[1])
if not bound then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if bound == ARGV[1] then
  return 1
end
return 0
"""

# The increment and the record that this key made it, in one atomic step: a retry
# finds the record and gets the first value back instead of counting again.
INCR_ONCE = """
local done = redis.call('GET', KEYS[2])
if done then
  return done
end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
return value
"""


def as_bytes(raw: bytes | str | None) -> bytes | None:
    """A GET's reply as the bytes stored: redis-py types it `bytes | str | None` for
    any client, and only one made with decode_responses=True (none here) answers str."""
    return raw.encode() if isinstance(raw, str) else raw


class StateKeys:
    """Every Redis key of the state, for the sync and the async twin alike."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def kv(self, key: str) -> str:
        return f"{self.prefix}:kv:{key}"

    def counter(self, name: str) -> str:
        # The name is a hash tag: a counter and its idempotency records share a
        # Redis Cluster slot, as a script touching both requires.
        return f"{self.prefix}:counter:" + "{" + name + "}"

    def binding(self, key: str) -> str:
        """Where an Idempotency-Key is bound to its first request."""
        return f"{self.prefix}:idempotency:{key}"

    def done(self, name: str, key: str) -> str:
        """The record that `key` made its increment of counter `name`, and its value."""
        return f"{self.counter(name)}:once:{key}"


def ttl_ms(ttl: float) -> int:
    """A TTL in seconds as PX milliseconds, never 0 (Redis refuses PX 0)."""
    return max(1, int(ttl * 1000))


def bound_request(name: str, by: int) -> str:
    """What an Idempotency-Key is bound to: the counter and the amount."""
    return f"{name} {by}"


class IncrOnce:
    """`incr_once` on any Redis client, for the toolkit's state and Django's cache alike.

    Two scripts, because a Redis Cluster script may only touch keys of one
    slot, and the key is global (reused with another counter it must be
    refused) while the increment belongs with its counter:

    1. `binding`, in the key's slot: the key is bound to "<counter> <by>";
       a different request with the same key is refused (422).
    2. `counter` and `done`, both carrying the counter's hash tag, so one slot:
       INCRBY and the record of it, together. At most once per key.

    Each step is atomic and can be repeated, so a retry after a timeout
    anywhere (before, between or after them) counts once in all. Both
    records live `ttl` seconds; the counter itself never expires.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._bind = client.register_script(BIND_KEY)
        self._incr = client.register_script(INCR_ONCE)

    def __call__(
        self, *, binding: str, counter: str, done: str, name: str, by: int, ttl: float
    ) -> int:
        px = ttl_ms(ttl)
        if not self._bind(keys=[binding], args=[bound_request(name, by), px]):
            raise IdempotencyKeyReused()
        return int(self._incr(keys=[counter, done], args=[by, px]))


class State(Protocol):
    """What every state backend offers (Redis here, SQLite in `embedded`).

    Every method raises `errors.BackendUnavailable` when the backend does not answer.
    """

    def incr(self, name: str, by: int = 1) -> int: ...
    def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        """`incr`, at most once per `key` for `ttl` seconds; a retry gets the first value.

        Raises `errors.IdempotencyKeyReused` if `key` was first used for another
        counter or another `by`.
        """
        ...

    def get_counter(self, name: str) -> int: ...
    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None: ...
    def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool: ...
    def get(self, key: str) -> bytes | None: ...
    def ping(self) -> None: ...


@unavailable_on(*REDIS_UNAVAILABLE)
class RedisState:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._keys = StateKeys(prefix)
        self._incr_once = IncrOnce(client)

    def incr(self, name: str, by: int = 1) -> int:
        return int(self._redis.incrby(self._keys.counter(name), by))

    def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        return self._incr_once(
            binding=self._keys.binding(key),
            counter=self._keys.counter(name),
            done=self._keys.done(name, key),
            name=name,
            by=by,
            ttl=ttl,
        )

    def get_counter(self, name: str) -> int:
        raw = self._redis.get(self._keys.counter(name))
        return int(raw) if raw is not None else 0

    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        px = int(ttl * 1000) if ttl is not None else None
        self._redis.set(self._keys.kv(key), value, px=px)

    def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        px = int(ttl * 1000) if ttl is not None else None
        return bool(self._redis.set(self._keys.kv(key), value, px=px, nx=True))

    def get(self, key: str) -> bytes | None:
        return as_bytes(self._redis.get(self._keys.kv(key)))

    def ping(self) -> None:
        self._redis.ping()
