"""Which shared-state backend a worker talks to: Redis, or the embedded store.

With REDIS_URL set, state and locks live in Redis; without it, in the
embedded single-host backend (SQLite and lock files in DATA_DIR). `runtime`
opens one per worker process, after the fork: a connection made in the
gunicorn master would be shared by every worker. State and locks share one
circuit breaker (`breaker`), so a stalled backend costs the worker one
timeout per BACKEND_RETRY_SECONDS, not one per request. A worker's Redis
pool is bounded (`config`'s redis_connections): a call that finds no free
connection in time is refused as `errors.Busy`, overload, not Redis down.
"""

from __future__ import annotations

import queue
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

from . import embedded
from .breaker import Breaker, GuardedLocks, GuardedState
from .config import Settings
from .errors import Busy, ConfigError
from .locks import Locks, RedisLocks
from .state import RedisState, State

# Connections reserved for re-arming held leases (`locks.Watchdog` and its async
# twin), in a pool of their own: requests waiting for a connection never delay a
# renewal, so back-pressure cannot cost a holder its lease. A sync process renews
# on one thread (one connection); an event loop may renew a few leases at once.
RENEWAL_CONNECTIONS = 4
# What a call that found no free connection is told: retry in this many seconds.
NO_CONNECTION_RETRY_SECONDS = 1


def no_free_connection() -> Busy:
    return Busy("no free connection to the store", NO_CONNECTION_RETRY_SECONDS)


class BoundedPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, whose wait for a free connection ends in `errors.Busy`.

    Every connection in use is back-pressure, not an outage: Redis was not even
    asked, so the call must neither open the breaker nor make the rate limit fail
    open. redis-py ends the wait with a ConnectionError ("No connection
    available."), which would do both; it is the only one raised while
    handling the pool queue's `queue.Empty`, so that one alone becomes Busy.
    """

    def get_connection(self, *args: Any, **kwargs: Any) -> Connection:
        try:
            # redis-py leaves BlockingConnectionPool.get_connection unannotated.
            connection: Connection = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            return connection
        except redis.ConnectionError as exc:
            if isinstance(exc.__context__, queue.Empty):
                raise no_free_connection() from None
            raise


class AsyncBoundedPool(redis.asyncio.BlockingConnectionPool):
    """`BoundedPool` for the event loop: the wait that ran out is the ConnectionError
    raised from a TimeoutError."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AsyncConnection:
        try:
            # redis-py leaves BlockingConnectionPool.get_connection unannotated.
            connection: AsyncConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            return connection
        except redis.ConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise no_free_connection() from None
            raise


def make_client(settings: Settings, connections: int | None = None) -> redis.Redis:
    """A client whose pool holds `connections` (by default the worker's share,
    `settings.redis_connections`), each waited for at most REDIS_TIMEOUT_SECONDS."""
    try:
        pool = BoundedPool.from_url(
            settings.redis_url, retry=Retry(NoBackoff(), 0), **_options(settings, connections)
        )
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL cannot be used: {exc}") from None
    return redis.Redis.from_pool(pool)


def make_async_client(settings: Settings, connections: int | None = None) -> redis.asyncio.Redis:
    """The async twin's client: the same options, for one event loop. Make it inside
    the loop that will use it (its pool has no pid check, and a loop of its own)."""
    try:
        pool = AsyncBoundedPool.from_url(
            settings.redis_url, retry=AsyncRetry(NoBackoff(), 0), **_options(settings, connections)
        )
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL cannot be used: {exc}") from None
    return redis.asyncio.Redis.from_pool(pool)


def _options(settings: Settings, connections: int | None) -> dict[str, Any]:
    # No automatic retries (the `retry` above): re-sending INCRBY after a timeout
    # could count twice.
    return {
        "max_connections": connections or settings.redis_connections,
        # A call waits this long for a free connection, then answers Busy.
        "timeout": settings.redis_timeout,
        # A paused or unreachable Redis must turn into a 503, not a hung worker.
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 15,
    }


def open_embedded(settings: Settings) -> tuple[embedded.SqliteState, embedded.FileLocks]:
    db = embedded.open_database(settings.data_dir)
    locks_dir = embedded.private_dir(settings.data_dir / "locks")
    return embedded.SqliteState(db), embedded.FileLocks(locks_dir, db, settings.lock_record_ttl)


def open_backend(settings: Settings, client: redis.Redis | None = None) -> tuple[State, Locks]:
    """State and locks on `client` (Redis; one is made if none is given) or the
    embedded store. A request makes one call at a time, so the rate limit shares
    the same client and connections."""
    state: State
    locks: Locks
    if settings.redis_url:
        client, prefix = client or make_client(settings), settings.key_prefix
        state = RedisState(client, prefix)
        locks = RedisLocks(
            client,
            prefix,
            renewals=make_client(settings, RENEWAL_CONNECTIONS),
            record_ttl=settings.lock_record_ttl,
        )
    else:
        state, locks = open_embedded(settings)
    # The embedded store is guarded too: a writer stalled while holding SQLite's
    # lock makes every other write wait the whole busy timeout, a Redis stall's twin.
    guard = Breaker(settings.backend_retry_after)
    return GuardedState(state, guard), GuardedLocks(locks, guard)
