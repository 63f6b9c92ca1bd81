"""The example endpoints' routes: (method, path pattern, handler)."""

from __future__ import annotations

from .. import ratelimit, runtime
from . import handlers

# Endpoints that cost a lock's time, disk or a child process: one budget per client
# for all of them (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST), shared by every worker
# and host; past it, 429 with Retry-After. Reads and counters stay unlimited.
expensive = ratelimit.limited(lambda: runtime.current().limiter)

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
