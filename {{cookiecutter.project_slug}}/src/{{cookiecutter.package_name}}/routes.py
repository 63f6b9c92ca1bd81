"""Every route of the service, once, for every framework.

A route is a method, a path pattern in `{param}` syntax and a handler that
takes a `Call` and returns a `Reply`; the handler's name is the operationId
that the API's description (`openapi.yaml`) gives it. Each adapter mounts this
table in its framework's own routing, so the three frameworks cannot drift
apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import health
{% if cookiecutter.include_examples %}
from .examples import routes as example_routes
{% endif %}
from .replies import Call, Reply

PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[Call], Reply]

    @property
    def name(self) -> str:
        return self.handler.__name__

    def params(self) -> list[str]:
        return PARAM.findall(self.path)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health.healthz),
    Route("GET", "/readyz", health.readyz),
    Route("GET", "/api/openapi.json", health.openapi),
    Route("GET", "/metrics", health.scrape),
{% if cookiecutter.include_examples %}
    *(Route(method, path, handler) for method, path, handler in example_routes.ROUTES),
{% endif %}
)


def by_path() -> dict[str, dict[str, Route]]:
    """Routes grouped by path pattern, then method (for frameworks that route by path)."""
    grouped: dict[str, dict[str, Route]] = {}
    for route in ROUTES:
        grouped.setdefault(route.path, {})[route.method] = route
    return grouped
