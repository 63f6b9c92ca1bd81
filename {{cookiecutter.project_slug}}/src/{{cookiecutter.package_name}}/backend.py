"""Which shared-state backend this worker talks to, opened after the fork.

A Redis connection made in the gunicorn master would be inherited by every
worker; so the client is created lazily, per process, on first use, and
rebuilt if the pid changes. Redis errors become `BackendUnavailable` (503),
and the service answers again as soon as Redis does, without a restart.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import config
from .errors import BackendUnavailable
from .locks import RedisLocks
from .state import RedisState

_guard = threading.Lock()
_opened: dict[int, tuple[RedisState, RedisLocks]] = {}

# The exceptions that mean "Redis did not answer", as opposed to a bug of ours.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


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


def _open() -> tuple[RedisState, RedisLocks]:
    pid = os.getpid()
    with _guard:
        opened = _opened.get(pid)
        if opened is None:
            _opened.clear()
            settings = config.settings()
            if not settings.redis_url:
                raise BackendUnavailable("REDIS_URL is not set")
            client = make_client(settings)
            opened = (
                RedisState(client, settings.key_prefix),
                RedisLocks(client, settings.key_prefix),
            )
            _opened[pid] = opened
        return opened


def state() -> RedisState:
    return _open()[0]


def locks() -> RedisLocks:
    return _open()[1]


def check() -> str:
    """'ok' when the backend answers, else a short reason for /readyz."""
    try:
        with unavailable_on_error():
            state().ping()
    except BackendUnavailable as exc:
        return exc.reason
    return "ok"
