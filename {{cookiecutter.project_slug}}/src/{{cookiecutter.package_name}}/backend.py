"""Which shared-state backend this worker talks to, opened after the fork.

With REDIS_URL set, state and locks live in Redis; without it, in the
embedded single-host backend (SQLite and lock files in DATA_DIR). Either way
the backend is opened lazily, per process, on first use: a connection made
in the gunicorn master would be shared by every worker. Backend errors
become `BackendUnavailable` (503), and the service answers again as soon as
the backend does, without a restart.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import config, embedded
from .errors import BackendUnavailable
from .locks import Locks, RedisLocks
from .state import RedisState, State

# The exceptions that mean "the backend did not answer", as opposed to a bug of ours.
UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    sqlite3.OperationalError,
)

_guard = threading.Lock()
_opened: dict[int, tuple[State, Locks]] = {}


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE as exc:
        raise BackendUnavailable(type(exc).__name__) from exc


def make_client(settings: config.Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url,
        # A paused or unreachable Redis must turn into a 503, not a hung worker.
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        # No automatic retries: re-sending INCRBY after a timeout could count twice.
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )


def _open_redis(settings: config.Settings) -> tuple[State, Locks]:
    client = make_client(settings)
    return RedisState(client, settings.key_prefix), RedisLocks(client, settings.key_prefix)


def _open_embedded(settings: config.Settings) -> tuple[State, Locks]:
    directory = embedded.private_dir(settings.data_dir)
    db = embedded.Database(directory / "state.sqlite3")
    locks_dir = embedded.private_dir(directory / "locks")
    return embedded.SqliteState(db), embedded.FileLocks(locks_dir, db)


def _open() -> tuple[State, Locks]:
    pid = os.getpid()
    with _guard:
        opened = _opened.get(pid)
        if opened is None:
            _opened.clear()
            settings = config.settings()
            opened = _open_redis(settings) if settings.redis_url else _open_embedded(settings)
            _opened[pid] = opened
        return opened


def state() -> State:
    return _open()[0]


def locks() -> Locks:
    return _open()[1]


def check() -> str:
    """'ok' when the backend answers, else a short reason for /readyz."""
    try:
        with unavailable_on_error():
            state().ping()
    except BackendUnavailable as exc:
        return exc.reason
    return "ok"
