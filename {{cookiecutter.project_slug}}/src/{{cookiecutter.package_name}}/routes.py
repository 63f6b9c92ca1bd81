"""Every route of the service, once, for every framework.

A route is a method, a path pattern in `{param}` syntax and a handler that
takes a `Call` and returns a `Reply`, with what the API's description says of
it. Each adapter mounts this table in its framework's own routing, so the
three frameworks cannot drift apart, and `openapi.py` describes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import health, openapi
{% if cookiecutter.include_examples %}
from .examples import routes as example_routes
from .examples.schemas import OPERATIONS as EXAMPLE_OPERATIONS
{% endif %}
from .openapi import Operation
from .replies import Call, Reply

PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[Call], Reply]
    # What the API's description (openapi.py) says of it.
    operation: Operation | None = None

    @property
    def name(self) -> str:
        return self.handler.__name__

    def params(self) -> list[str]:
        return PARAM.findall(self.path)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health.healthz, openapi.HEALTHZ),
    Route("GET", "/readyz", health.readyz, openapi.READYZ),
    Route("GET", "/api/openapi.json", openapi.openapi, openapi.OPENAPI),
    Route("GET", "/metrics", health.scrape, openapi.METRICS),
{% if cookiecutter.include_examples %}
    *(
        Route(method, path, handler, EXAMPLE_OPERATIONS[handler.__name__])
        for method, path, handler in example_routes.ROUTES
    ),
{% endif %}
)


def by_path() -> dict[str, dict[str, Route]]:
    """Routes grouped by path pattern, then method (for frameworks that route by path)."""
    grouped: dict[str, dict[str, Route]] = {}
    for route in ROUTES:
        grouped.setdefault(route.path, {})[route.method] = route
    return grouped
