"""Settings read once from the environment, so every worker process agrees.

Nothing here opens a connection or touches the disk: `runtime` does that,
once per worker, after the fork.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["ConfigError", "Environ", "Settings", "load"]


class Environ:
    """Reads settings from a mapping of variables: the process's environment, or a
    test's own dict (so a test never changes `os.environ`)."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._variables = variables

    def text(self, name: str, default: str) -> str:
        return self._variables.get(name, "").strip() or default

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._variables.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}.") from None
        if not value >= minimum:  # also refuses NaN
            raise ConfigError(f"{name} must be at least {minimum}, not {raw}.")
        return value

    def whole(self, name: str, default: int, *, minimum: int = 0) -> int:
        raw = self._variables.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}.")
        return value


def env_str(name: str, default: str) -> str:
    return Environ(os.environ).text(name, default)


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    return Environ(os.environ).number(name, default, minimum=minimum)


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    return Environ(os.environ).whole(name, default, minimum=minimum)


@dataclass(frozen=True)
class Settings:
    # Unset means no Redis: the embedded single-host backend in data_dir serves instead.
    redis_url: str
    # Without socket timeouts a paused Redis hangs requests instead of answering 503.
    # A call also waits at most this long for a free connection, then answers 503 busy.
    redis_timeout: float
    # Redis connections one worker's requests share (its rate limit included). A call
    # holds one for a round trip, so a worker needs no more than it serves requests
    # at once: APP_WORKER_CONCURRENCY, which gunicorn.conf.py derives from the worker
    # class. Past REDIS_MAX_CONNECTIONS (gevent's 1,000 connections, aiohttp's no
    # bound) calls wait their turn instead: every worker of every host shares Redis's
    # maxclients (10,000 by default) and each worker its file descriptors.
    redis_connections: int
    # One prefix per service, so two services can share a Redis without colliding.
    key_prefix: str
    # The embedded backend's private directory (SQLite, lock files); one host only.
    data_dir: Path
    # The export store: nginx serves <export_dir>/files through an internal location.
    export_dir: Path
    # "accel": nginx sends downloads (X-Accel-Redirect); "direct": the app does, for
    # `make run` without nginx. Never "direct" in production: a slow client holds a worker.
    export_delivery: str
    # Exports older than this are gone (404) at once; each worker's sweep removes their bytes.
    export_max_age: float
    # An export that would leave less free disk than this is refused (507), so one
    # large export cannot starve the database, the logs and nginx's buffers.
    export_disk_reserve: int
    # All exports' own bytes together (data and metadata, in whole blocks) may take at
    # most this much; past it, 507. A bound on what anonymous requests can make the
    # disk hold, whatever the disk's size.
    export_quota: int
    # How long a request may wait for a lock before it gets 409 lock_timeout.
    lock_wait: float
    # A lock outlives a crashed holder by at most this long; a living holder's
    # watchdog re-arms it every third of it while the work goes on, so it can be
    # short. Keep it well above the backend's round trip (REDIS_TIMEOUT_SECONDS).
    lock_ttl: float
    # A lock name's own records (its fence) are forgotten this long after its last
    # acquisition or renewal, so names used once do not fill the store; its fencing
    # tokens still only go up (locks.py says why). Longer than any lease.
    lock_record_ttl: float
    # After the backend fails to answer, a worker answers 503 at once for this long
    # before trying it again: a stalled backend costs each worker one timeout, not one
    # per request, so liveness and other endpoints stay fast.
    backend_retry_after: float
    # An Idempotency-Key is remembered this long (the contract promises 24 hours).
    idempotency_ttl: float
    # Expensive requests (exports, tasks, locked increments) per client, counted
    # across every worker and host: a sustained rate per second and a burst. Generous
    # by default: it stops floods, not a busy client.
    rate_limit_per_second: float
    rate_limit_burst: int
    # The peers whose X-Forwarded-For names the client the rate limit counts: the same
    # FORWARDED_ALLOW_IPS (and default) gunicorn.conf.py trusts for X-Forwarded-Proto.
    forwarded_allow_ips: str
    # Child tasks at once on this host, counted across its workers (capacity.py); past
    # it, 503 busy at once. gunicorn.conf.py sets it from the workers and their class,
    # so some always stay free for short requests; a process served otherwise runs one.
    long_work_cap: int


def load(variables: Mapping[str, str] | None = None) -> Settings:
    """The settings in the environment, or in `variables` when a test passes its own."""
    env = Environ(os.environ if variables is None else variables)
    delivery = env.text("EXPORT_DELIVERY", "accel")
    if delivery not in {"accel", "direct"}:
        raise ConfigError(f"EXPORT_DELIVERY must be accel or direct, not {delivery!r}.")
    lock_ttl = env.number("LOCK_TTL_SECONDS", 5.0, minimum=1.0)
    lock_record_ttl = env.number("LOCK_RECORD_TTL_SECONDS", 86400.0, minimum=1.0)
    if lock_record_ttl <= lock_ttl:
        raise ConfigError(
            f"LOCK_RECORD_TTL_SECONDS ({lock_record_ttl:g}) must exceed "
            f"LOCK_TTL_SECONDS ({lock_ttl:g}): a lock's records must outlive its lease."
        )
    # 0 (or unset, outside gunicorn): no bound known, REDIS_MAX_CONNECTIONS serves.
    concurrency = env.whole("APP_WORKER_CONCURRENCY", 0)
    max_connections = env.whole("REDIS_MAX_CONNECTIONS", 100, minimum=1)
    return Settings(
        redis_url=env.text("REDIS_URL", ""),
        redis_timeout=env.number("REDIS_TIMEOUT_SECONDS", 2.0, minimum=0.1),
        redis_connections=min(concurrency, max_connections) if concurrency else max_connections,
        key_prefix=env.text("KEY_PREFIX", "{{ cookiecutter.project_slug }}"),
        data_dir=Path(env.text("DATA_DIR", "var/data")).resolve(),
        export_dir=Path(env.text("EXPORT_DIR", "var/exports")).resolve(),
        export_delivery=delivery,
        export_max_age=env.number("EXPORT_MAX_AGE_SECONDS", 86400.0, minimum=1.0),
        export_disk_reserve=env.whole("EXPORT_DISK_RESERVE_BYTES", 64 << 20),
        export_quota=env.whole("EXPORT_QUOTA_BYTES", 8 << 30, minimum=1),
        lock_wait=env.number("LOCK_WAIT_SECONDS", 10.0, minimum=0.0),
        lock_ttl=lock_ttl,
        lock_record_ttl=lock_record_ttl,
        backend_retry_after=env.number("BACKEND_RETRY_SECONDS", 1.0, minimum=0.0),
        idempotency_ttl=env.number("IDEMPOTENCY_TTL_SECONDS", 86400.0, minimum=1.0),
        rate_limit_per_second=env.number("RATE_LIMIT_PER_SECOND", 100.0, minimum=0.001),
        rate_limit_burst=env.whole("RATE_LIMIT_BURST", 1000, minimum=1),
        forwarded_allow_ips=env.text("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        long_work_cap=env.whole("LONG_WORK_CAP", 1, minimum=1),
    )
