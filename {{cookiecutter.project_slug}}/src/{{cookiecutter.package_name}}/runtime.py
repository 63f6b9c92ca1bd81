"""What each worker process opens once: settings, state, locks, exports, rate limit, slots.

A connection or file handle made in the gunicorn master would be shared by
every forked worker, so nothing is opened at import: `current()` opens it all
on first use in each process, and again in a child forked after that. A
framework adapter calls `boot()` when its app is created in the worker, so a
broken setting or data directory stops the worker with one sentence instead
of answering 500s.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from . import backend, capacity, config, ratelimit
from .errors import ConfigError
from .exports import ExportStore
from .locks import Locks
from .state import State

# gunicorn's exit status for "worker failed to boot": the arbiter stops,
# instead of forking a worker that can never start again and again.
WORKER_BOOT_ERROR = 3


@dataclass(frozen=True)
class Runtime:
    settings: config.Settings
    state: State
    locks: Locks
    exports: ExportStore
    # Expensive requests per client, counted on the same backend as the state.
    limiter: ratelimit.ClientRateLimit
    # This host's slots for long work (child tasks), shared by its workers.
    slots: capacity.Slots


_guard = threading.Lock()
_opened: tuple[int, Runtime] | None = None


def open_runtime(settings: config.Settings) -> Runtime:
    # One pool of Redis connections for every request's calls, sized in `config`.
    client = backend.make_client(settings) if settings.redis_url else None
    state, locks = backend.open_backend(settings, client)
    limit = ratelimit.open_limit(settings, client)
    return Runtime(
        settings, state, locks, open_exports(settings), limit, capacity.open_slots(settings)
    )


def open_exports(settings: config.Settings) -> ExportStore:
    """The export store, sweeping on a timer of this process's own."""
    store = ExportStore(
        settings.export_dir,
        settings.export_max_age,
        disk_reserve=settings.export_disk_reserve,
        quota=settings.export_quota,
    )
    store.sweep_in_background()
    return store


def current() -> Runtime:
    """This process's runtime, opened on first use (and anew after a fork)."""
    global _opened
    opened = _opened
    if opened is not None and opened[0] == os.getpid():
        return opened[1]
    with _guard:
        if _opened is None or _opened[0] != os.getpid():
            _opened = (os.getpid(), open_runtime(config.load()))
        return _opened[1]


@contextlib.contextmanager
def config_errors_stop_the_worker() -> Iterator[None]:
    """A configuration error inside ends the worker with one sentence and gunicorn's
    boot-error status, for every adapter."""
    try:
        yield
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(WORKER_BOOT_ERROR) from None


def boot() -> Runtime:
    """Open the runtime at worker start; a configuration error ends the worker."""
    with config_errors_stop_the_worker():
        return current()
