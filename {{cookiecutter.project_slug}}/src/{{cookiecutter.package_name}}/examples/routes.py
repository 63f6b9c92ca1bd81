"""The example endpoints' routes: (method, path pattern, handler)."""

from __future__ import annotations

from . import handlers

ROUTES = (
    ("GET", "/api/worker", handlers.worker),
    ("POST", "/api/counters/{name}/incr", handlers.incr_counter),
    ("GET", "/api/counters/{name}", handlers.get_counter),
    ("POST", "/api/locked-increment/{name}", handlers.locked_increment),
    ("POST", "/api/exports", handlers.create_export),
    ("GET", "/api/exports/{export_id}", handlers.get_export),
    ("GET", "/api/exports/{export_id}/download", handlers.download_export),
    ("POST", "/api/tasks/run", handlers.run_task),
)
