"""Which shared-state backend a worker talks to: Redis, or the embedded store.

With REDIS_URL set, state and locks live in Redis; without it, in the
embedded single-host backend (SQLite and lock files in DATA_DIR). `runtime`
opens one per worker process, after the fork: a connection made in the
gunicorn master would be shared by every worker.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import embedded
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
        settings.redis_url,
        # A paused or unreachable Redis must turn into a 503, not a hung worker.
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        # No automatic retries: re-sending INCRBY after a timeout could count twice.
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )


def open_backend(settings: Settings) -> tuple[State, Locks]:
    if settings.redis_url:
        client = make_client(settings)
        return RedisState(client, settings.key_prefix), RedisLocks(client, settings.key_prefix)
    db = embedded.open_database(settings.data_dir)
    locks_dir = embedded.private_dir(settings.data_dir / "locks")
    return embedded.SqliteState(db), embedded.FileLocks(locks_dir, db)
