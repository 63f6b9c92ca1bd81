"""The example counters, through Django's cache, as a Django project would write them.

In a Django project shared counters go through `django.core.cache`, in the
alias for state (settings.STATE_CACHE_ALIAS): unlike a bounded cache, it never
drops an entry to make room. The settings make it a store every worker shares
(django-redis, whose incr is one Lua step, or cache.SQLiteStateCache). `add`
then `incr` are each atomic, so concurrent increments through any number of
workers add up exactly.

An increment with an Idempotency-Key needs the key's record and the increment
in one atomic step, which the cache API has no call for: with Redis it is the
toolkit's two scripts (`state.IncrOnce`) on django-redis's own client, with
SQLite one transaction on the state cache's table. The cache's client has its own
circuit breaker, as the toolkit's has (see `breaker`).
"""

from __future__ import annotations

import pickle
import time
from contextlib import AbstractContextManager

from django.conf import settings
from django.core.cache import BaseCache, caches
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted

from ...embedded import SQLITE_UNAVAILABLE
from ...errors import IdempotencyKeyReused, unavailable_when
from ...state import REDIS_UNAVAILABLE, IncrOnce
from ..apps import config
from ..cache import SQLiteStateCache

# What the cache raises when its store does not answer. django-redis re-raises the
# redis-py error behind ConnectionInterrupted (unless IGNORE_EXCEPTIONS, never set).
CACHE_UNAVAILABLE = (ConnectionInterrupted, *REDIS_UNAVAILABLE, *SQLITE_UNAVAILABLE)


def _key(name: str) -> str:
    # The name is a hash tag: the counter and its idempotency records share a Redis
    # Cluster slot, as the script that touches both requires.
    return "counter:{" + name + "}"


def _guarded(operation: str) -> AbstractContextManager[None]:
    return config().cache_breaker().guard(operation)


def _state() -> BaseCache:
    return caches[settings.STATE_CACHE_ALIAS]


def _incr_once(name: str, by: int, key: str, ttl: float) -> int:
    cache = _state()
    if isinstance(cache, SQLiteStateCache):
        return _sqlite_incr_once(cache, name, by, key, ttl)
    increment = IncrOnce(get_redis_connection(settings.STATE_CACHE_ALIAS))
    counter = cache.make_key(_key(name))
    return increment(
        binding=cache.make_key(f"idempotency:{key}"),
        counter=counter,
        done=f"{counter}:once:{key}",
        name=name,
        by=by,
        ttl=ttl,
    )


def _sqlite_incr_once(cache: SQLiteStateCache, name: str, by: int, key: str, ttl: float) -> int:
    """The counter's row and the key's record, in one transaction on the cache's table.

    The record is stored as the cache stores any value (a pickle), so `cache.get`
    of it reads back (name, by, value).
    """
    counter = cache.make_and_validate_key(_key(name))
    record = cache.make_and_validate_key(f"idempotency:{key}")
    now = time.time()
    with cache._db.transaction() as conn:
        row = conn.execute(
            "SELECT value FROM django_state WHERE key = ? AND expires_at > ?", (record, now)
        ).fetchone()
        if row is None:
            # The counter never expires; `add` then `incr` store it the same way.
            (value,) = conn.execute(
                "INSERT INTO django_state (key, value, expires_at) VALUES (?, ?, NULL) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value "
                "RETURNING value",
                (counter, by),
            ).fetchone()
            conn.execute(
                "INSERT INTO django_state (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value, expires_at = excluded.expires_at",
                (record, pickle.dumps((name, by, value)), now + ttl),
            )
            return int(value)
    # Only this service writes the file, in a directory only its user can enter.
    first_name, first_by, value = pickle.loads(row[0])  # noqa: S301
    if (first_name, first_by) != (name, by):
        raise IdempotencyKeyReused()
    return int(value)


def incr(name: str, by: int, key: str | None) -> int:
    """Add `by` to counter `name`; with an Idempotency-Key `key`, once for all its retries."""
    operation = "cache.incr" if key is None else "cache.incr_once"
    with _guarded(operation), unavailable_when(*CACHE_UNAVAILABLE, operation=operation):
        if key is None:
            cache = _state()
            # No timeout: a counter is state, not a cached copy of something.
            cache.add(_key(name), 0, timeout=None)
            return int(cache.incr(_key(name), by))
        return _incr_once(name, by, key, config().runtime().settings.idempotency_ttl)


def get(name: str) -> int:
    with _guarded("cache.get"), unavailable_when(*CACHE_UNAVAILABLE, operation="cache.get"):
        return int(_state().get(_key(name), 0))
