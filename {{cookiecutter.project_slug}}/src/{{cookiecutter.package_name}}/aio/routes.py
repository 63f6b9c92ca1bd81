"""Each route's async twin: the route table stays `routes.ROUTES`, one for all.

An adapter on an event loop mounts every route of `routes.ROUTES` with the
handler named here after the route's sync handler, so paths, methods and
the API's description cannot drift between the twins. A route whose sync
handler is rate limited (`ratelimit.limited`) is limited here too, on the
same budget.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import openapi
{% if cookiecutter.include_examples %}
from ..examples import aio_handlers
{% endif %}
from ..replies import Call, Reply
from ..routes import Route
from . import health, runtime
from .ratelimit import AsyncHandler, limited


def inline(handler: Callable[[Call], Reply]) -> AsyncHandler:
    """A sync handler that touches no disk, network or child (it builds a reply
    from memory): safe to run on the loop as it is."""

    async def on_loop(call: Call) -> Reply:
        return handler(call)

    on_loop.__name__ = handler.__name__
    return on_loop


TWINS: dict[str, AsyncHandler] = {
    "healthz": health.healthz,
    "readyz": health.readyz,
    "openapi": inline(openapi.openapi),
    "scrape": health.scrape,
{% if cookiecutter.include_examples %}
    **aio_handlers.TWINS,
{% endif %}
}

_limited = limited(lambda: runtime.current().limiter)


def async_handler(route: Route) -> AsyncHandler:
    """The async twin of `route`'s handler; LookupError names a route without one."""
    twin = TWINS.get(route.name)
    if twin is None:
        raise LookupError(f"route {route.method} {route.path} ({route.name}) has no async twin")
    return _limited(twin) if getattr(route.handler, "rate_limited", False) else twin
