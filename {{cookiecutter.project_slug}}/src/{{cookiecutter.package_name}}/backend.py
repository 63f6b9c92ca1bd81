"""Which shared-state backend a worker talks to: Redis, or the embedded store.

With REDIS_URL set, state and locks live in Redis; without it, in the
embedded single-host backend (SQLite and lock files in DATA_DIR). `runtime`
opens one per worker process, after the fork: a connection made in the
gunicorn master would be shared by every worker. State and locks share one
circuit breaker (`breaker`), so a stalled backend costs the worker one
timeout per BACKEND_RETRY_SECONDS, not one per request.
"""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import embedded
from .breaker import Breaker, GuardedLocks, GuardedState
from .config import Settings
from .errors import ConfigError
from .locks import Locks, RedisLocks
from .state import RedisState, State


def make_client(settings: Settings) -> redis.Redis:
    try:
        return _client(settings)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL cannot be used: {exc}") from None


def _client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url, retry=Retry(NoBackoff(), 0), **_options(settings)
    )


def make_async_client(settings: Settings) -> redis.asyncio.Redis:
    """The async twin's client: the same options, for one event loop. Make it inside
    the loop that will use it (its pool has no pid check, and a loop of its own)."""
    try:
        return redis.asyncio.Redis.from_url(
            settings.redis_url, retry=AsyncRetry(NoBackoff(), 0), **_options(settings)
        )
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL cannot be used: {exc}") from None


def _options(settings: Settings) -> dict:
    # No automatic retries (the `retry` above): re-sending INCRBY after a timeout
    # could count twice.
    return {
        # A paused or unreachable Redis must turn into a 503, not a hung worker.
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 15,
        # RESP2. Under RESP3, redis-py 8's default, the asyncio pool hands out an
        # idle connection without checking whether the server closed it, so after a
        # Redis restart each connection idle since before fails its next command
        # ("Connection closed by server"): a 503 that opens the breaker while Redis
        # answers again (redis-py 8.1.0, issue 4252, fixed by PR 4260). Nothing here
        # needs RESP3.
        "protocol": 2,
    }


def open_embedded(settings: Settings) -> tuple[embedded.SqliteState, embedded.FileLocks]:
    db = embedded.open_database(settings.data_dir)
    locks_dir = embedded.private_dir(settings.data_dir / "locks")
    return embedded.SqliteState(db), embedded.FileLocks(locks_dir, db)


def open_backend(settings: Settings) -> tuple[State, Locks]:
    state: State
    locks: Locks
    if settings.redis_url:
        client, prefix = make_client(settings), settings.key_prefix
        state, locks = RedisState(client, prefix), RedisLocks(client, prefix)
    else:
        state, locks = open_embedded(settings)
    # The embedded store is guarded too: a writer stalled while holding SQLite's
    # lock makes every other write wait the whole busy timeout, a Redis stall's twin.
    guard = Breaker(settings.backend_retry_after)
    return GuardedState(state, guard), GuardedLocks(locks, guard)
