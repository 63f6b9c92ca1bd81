"""The toolkit's own errors: what went wrong, in words a person can act on.

The toolkit never speaks HTTP. It raises these, and one table at the edge
(`http_errors.ERRORS`) turns each into a status and a machine code, so every
framework answers the same failure the same way.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

C = TypeVar("C", bound=type)

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every error the toolkit raises on purpose; str() is one sentence."""


class InvalidInput(ServiceError):
    """A request's input is refused before any work; `code` says which rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotFound(ServiceError):
    def __init__(self, what: str = "resource") -> None:
        super().__init__(f"No such {what}.")


class BackendUnavailable(ServiceError):
    """The shared-state backend did not answer; what the call changed is unknown.

    A command that timed out may still run once the backend resumes (Redis
    runs what it had already received), so the message never claims that
    nothing changed. `reason` is short (an error's class): the cause itself
    goes to the log, not to the client.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The shared-state backend did not answer ({reason}): this request may or may "
            "not have taken effect. Retry later; an increment retried with the same "
            "Idempotency-Key takes effect at most once."
        )
        self.reason = reason


class LockTimeout(ServiceError):
    def __init__(self, name: str, waited: float) -> None:
        super().__init__(f"Lock {name!r} stayed busy for {waited:g} s; nothing was written.")


class LockLost(ServiceError):
    """The lease expired or passed to another holder before a fenced write."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Lock {name!r} expired before the write; nothing was written.")


class IdempotencyKeyReused(ServiceError):
    """An Idempotency-Key came back with a different request than its first one."""

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was first used for a different request; use a new key."
        )


class RateLimited(ServiceError):
    """One client sent more expensive requests than its shared rate allows."""

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"Too many requests from this client; retry in {seconds} s.")
        self.retry_after = seconds


class Busy(ServiceError):
    """More long work at once than this host holds, or no free connection to the
    store within the wait: back-pressure, not an outage. Nothing was started, so
    a retry after `retry_after` seconds is safe."""

    def __init__(self, what: str, retry_after: float = 1) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            f"The service is busy ({what}); nothing was started. Retry in {seconds} s."
        )
        self.retry_after = seconds


class InsufficientStorage(ServiceError):
    def __init__(self, needed: int) -> None:
        super().__init__(f"Not enough disk space for {needed} more bytes; nothing was written.")


class StoreFull(ServiceError):
    """The shared-state store has no room for a write (Redis at maxmemory, SQLite's
    disk full). The store refused the write whole, so nothing was written; reads
    and writes that need no room go on. Unlike BackendUnavailable, the store
    answered: this never opens the breaker."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The shared-state store is full ({reason}): nothing was written. Reads go on "
            "answering; retry once the store has room again."
        )
        self.reason = reason


def store_full(exc: BaseException | None) -> bool:
    """Whether a backend's error, or one it wraps, says the store has no room."""
    while exc is not None:
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return True
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        exc = exc.__cause__
    return False


class ConfigError(ServiceError):
    """A setting or a directory cannot be used; raised at start, the message names it."""


@contextlib.contextmanager
def unavailable_when(
    *errors: type[BaseException], operation: str = "a backend call"
) -> Iterator[None]:
    """A backend's own errors, raised inside, become BackendUnavailable, or
    StoreFull where the store answered that it has no room.

    The client is told the error's class only; the cause (class, message and
    the operation that failed) is logged here, once, at WARNING, so every 503
    it becomes can be explained from the error log.
    """
    try:
        yield
    except errors as exc:
        if store_full(exc):
            log.warning("store full in %s: %s: %s", operation, type(exc).__name__, exc)
            raise StoreFull(type(exc).__name__) from exc
        log.warning("backend unavailable in %s: %s: %s", operation, type(exc).__name__, exc)
        raise BackendUnavailable(type(exc).__name__) from exc


def unavailable_on(*errors: type[BaseException]) -> Callable[[C], C]:
    """Class decorator: `unavailable_when` around every public method, so callers
    handle one error whatever the backend."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        operation = method.__qualname__

        if inspect.iscoroutinefunction(method):
            # The async twins' methods: the translation must wrap the awaiting.
            @functools.wraps(method)
            async def translated_async(*args: Any, **kwargs: Any) -> Any:
                with unavailable_when(*errors, operation=operation):
                    return await method(*args, **kwargs)

            return translated_async

        @functools.wraps(method)
        def translated(*args: Any, **kwargs: Any) -> Any:
            with unavailable_when(*errors, operation=operation):
                return method(*args, **kwargs)

        return translated

    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and callable(member):
                setattr(cls, name, wrap(member))
        return cls

    return decorate
