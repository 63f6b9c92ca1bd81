"""A stalled backend costs each worker one timeout, not one per request.

When Redis stops answering (paused, overloaded, a network partition), every
call waits a full socket timeout. A sync worker serves one request at a
time, so requests queue behind those waits, and even /healthz, which touches
no backend, answers too late for a health check. This per-process circuit
breaker remembers the failure: for BACKEND_RETRY_SECONDS afterwards every
call answers BackendUnavailable at once; then one call is let through to
try again (half-open), and the first answer closes the breaker.

Why not a library: pybreaker holds one lock across the whole guarded call,
which would make every thread and greenlet of a worker wait for each other's
Redis round trips; circuitbreaker keeps its state with no lock at all and,
once the pause is over, lets every waiting call through at the same time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from .errors import BackendUnavailable, Busy, ServiceError
from .locks import Holding, Lease, Locks
from .state import State

log = logging.getLogger(__name__)


class Breaker:
    """Closed, open for `retry_after` seconds after a failure, then one trial.

    Thread and greenlet safe: its lock guards a few assignments, never a
    backend call. A trial that has neither failed nor succeeded after
    `retry_after` (a lock wait, say: the backend may be answering all along)
    no longer holds the others back: the next call is let through too. So,
    however many threads or greenlets a worker runs, at most one call per
    `retry_after` starts waiting on a stalled backend. `retry_after` 0 turns
    the breaker off.
    """

    def __init__(self, retry_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        # Why the backend last failed; None while the breaker is closed.
        self._cause: str | None = None
        # Until when calls are answered at once (open, or a trial under way).
        self._blocked_until = 0.0

    @property
    def closed(self) -> bool:
        return self._cause is None

    @contextlib.contextmanager
    def guard(self, operation: str, *, refuse: bool = True) -> Iterator[None]:
        """Run the block, or raise BackendUnavailable at once while the breaker is open.

        With `refuse` false the block always runs (a call that must be tried
        whatever the state), and its outcome still opens or closes the breaker.
        """
        if refuse:
            self._admit(operation)
        try:
            yield
        except BackendUnavailable as exc:
            self._trip(exc)
            raise
        except Busy:
            # No free connection: the backend was not asked, so this says nothing of it.
            raise
        except ServiceError:
            # The backend answered (a lock was busy, a key was reused): it is up.
            self._close()
            raise
        else:
            self._close()

    def _admit(self, operation: str) -> None:
        with self._lock:
            cause = self._cause
            if cause is None:
                return
            now = self._clock()
            left = self._blocked_until - now
            if left <= 0:
                # Half-open: this call is the trial; the others keep failing fast
                # until it answers, or for one more `retry_after` at most.
                self._blocked_until = now + self.retry_after
                return
        # One line per 503, with the cause: the log explains every refusal.
        log.warning(
            "backend unavailable in %s: not tried, the last call failed (%s); next try in %.2f s",
            operation,
            cause,
            left,
        )
        raise BackendUnavailable(f"{cause.split(':', 1)[0]}, not retried for {left:.1f} s")

    def _trip(self, exc: BackendUnavailable) -> None:
        cause = exc.reason
        if exc.__cause__ is not None:
            cause = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
        with self._lock:
            self._cause = cause
            self._blocked_until = self._clock() + self.retry_after

    def _close(self) -> None:
        if self._cause is None:
            return  # the common case: no lock taken
        with self._lock:
            self._cause = None
            self._blocked_until = 0.0


class GuardedState:
    """A `State` whose every call goes through the worker's breaker."""

    def __init__(self, state: State, breaker: Breaker) -> None:
        self._state = state
        self._breaker = breaker

    def incr(self, name: str, by: int = 1) -> int:
        with self._breaker.guard("state.incr"):
            return self._state.incr(name, by)

    def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        with self._breaker.guard("state.incr_once"):
            return self._state.incr_once(name, by, key, ttl)

    def get_counter(self, name: str) -> int:
        with self._breaker.guard("state.get_counter"):
            return self._state.get_counter(name)

    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        with self._breaker.guard("state.set"):
            self._state.set(key, value, ttl)

    def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        with self._breaker.guard("state.set_if_absent"):
            return self._state.set_if_absent(key, value, ttl)

    def get(self, key: str) -> bytes | None:
        with self._breaker.guard("state.get"):
            return self._state.get(key)

    def ping(self) -> None:
        with self._breaker.guard("state.ping"):
            self._state.ping()


class GuardedLocks(Holding):
    """A `Locks` whose calls go through the worker's breaker; `hold` is Holding's,
    so its acquire, watchdog extensions and release are guarded one by one."""

    def __init__(self, locks: Locks, breaker: Breaker) -> None:
        self._locks = locks
        self._breaker = breaker

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        with self._breaker.guard("locks.try_acquire"):
            return self._locks.try_acquire(name, ttl)

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        with self._breaker.guard("locks.acquire"):
            return self._locks.acquire(name, ttl, wait)

    def release(self, lease: Lease) -> bool:
        # Always tried, never refused by an open breaker: a flock (embedded backend)
        # is freed only by its holder, and a Redis lock would wait out its TTL.
        with self._breaker.guard("locks.release", refuse=False):
            return self._locks.release(lease)

    def extend(self, lease: Lease, ttl: float) -> bool:
        with self._breaker.guard("locks.extend"):
            return self._locks.extend(lease, ttl)

    def read_fenced(self, name: str, key: str) -> bytes | None:
        with self._breaker.guard("locks.read_fenced"):
            return self._locks.read_fenced(name, key)

    def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        with self._breaker.guard("locks.write_fenced"):
            self._locks.write_fenced(lease, key, value)
