"""The example endpoints' routes: (method, path pattern, handler)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from .. import runtime
from ..replies import Call, Reply
from . import handlers

Handler = Callable[[Call], Reply]


def expensive(handler: Handler) -> Handler:
    """Endpoints that cost a lock's time, disk or a child process: one budget per
    client for all of them (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST), shared by every
    worker and host; past it, 429 with Retry-After. Reads and counters stay unlimited.

    The check comes before any parsing, so a flood of bad requests counts too.
    """

    @functools.wraps(handler)
    def checked(call: Call) -> Reply:
        runtime.current().limiter.check(call.peer, call.header("x-forwarded-for"))
        return handler(call)

    # The async adapter limits the route's async twin by the same mark.
    checked.rate_limited = True  # type: ignore[attr-defined]
    return checked


ROUTES = (
    ("GET", "/api/worker", handlers.worker),
    ("POST", "/api/counters/{name}/incr", handlers.incr_counter),
    ("GET", "/api/counters/{name}", handlers.get_counter),
    ("POST", "/api/locked-increment/{name}", expensive(handlers.locked_increment)),
    ("POST", "/api/exports", expensive(handlers.create_export)),
    ("GET", "/api/exports/{export_id}", handlers.get_export),
    ("GET", "/api/exports/{export_id}/download", handlers.download_export),
    ("POST", "/api/tasks/run", expensive(handlers.run_task)),
)
