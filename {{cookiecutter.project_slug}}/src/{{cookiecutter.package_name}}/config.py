"""Settings read once from the environment, so every worker process agrees.

Nothing here opens a connection or touches the disk: `runtime` does that,
once per worker, after the fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["ConfigError", "Settings", "load"]


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}.") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be at least {minimum}, not {raw}.")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}.")
    return value


@dataclass(frozen=True)
class Settings:
    # Unset means no Redis: the embedded single-host backend in data_dir serves instead.
    redis_url: str
    # Without socket timeouts a paused Redis hangs requests instead of answering 503.
    redis_timeout: float
    # One prefix per service, so two services can share a Redis without colliding.
    key_prefix: str
    # The embedded backend's private directory (SQLite, lock files); one host only.
    data_dir: Path
    # The export store: nginx serves <export_dir>/files through an internal location.
    export_dir: Path
    # "accel": nginx sends downloads (X-Accel-Redirect); "direct": the app does, for
    # `make run` without nginx. Never "direct" in production: a slow client holds a worker.
    export_delivery: str
    # Exports older than this are removed by the next export that runs a sweep.
    export_max_age: float
    # How long a request may wait for a lock before it gets 409 lock_timeout.
    lock_wait: float
    # A lock outlives a crashed holder by at most this long; longer than any hold.
    lock_ttl: float


def load() -> Settings:
    delivery = env_str("EXPORT_DELIVERY", "accel")
    if delivery not in {"accel", "direct"}:
        raise ConfigError(f"EXPORT_DELIVERY must be accel or direct, not {delivery!r}.")
    return Settings(
        redis_url=env_str("REDIS_URL", ""),
        redis_timeout=env_float("REDIS_TIMEOUT_SECONDS", 2.0, minimum=0.1),
        key_prefix=env_str("KEY_PREFIX", "{{ cookiecutter.project_slug }}"),
        data_dir=Path(env_str("DATA_DIR", "var/data")).resolve(),
        export_dir=Path(env_str("EXPORT_DIR", "var/exports")).resolve(),
        export_delivery=delivery,
        export_max_age=env_float("EXPORT_MAX_AGE_SECONDS", 86400.0, minimum=1.0),
        lock_wait=env_float("LOCK_WAIT_SECONDS", 10.0, minimum=0.0),
        lock_ttl=env_float("LOCK_TTL_SECONDS", 30.0, minimum=6.0),
    )
