"""Each route's async twin: the route table stays `routes.ROUTES`, one for all.

An adapter on an event loop mounts every route of `routes.ROUTES` with the
handler named here after the route's sync handler, so paths, methods and
the API's description cannot drift between the twins. A route whose sync
handler is rate limited (`examples.routes.expensive`) is limited here too, on
the same budget.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

{% if cookiecutter.include_examples %}
from ..examples import aio_handlers
{% endif %}
from ..replies import Call, Reply
from ..routes import Route
from . import health, runtime

AsyncHandler = Callable[[Call], Awaitable[Reply]]

TWINS: dict[str, AsyncHandler] = {
    "healthz": health.healthz,
    "readyz": health.readyz,
    "openapi": health.openapi,
    "scrape": health.scrape,
{% if cookiecutter.include_examples %}
    **aio_handlers.TWINS,
{% endif %}
}


def _limited(handler: AsyncHandler) -> AsyncHandler:
    """The request's client is counted first, as for the sync handler."""

    @functools.wraps(handler)
    async def checked(call: Call) -> Reply:
        await runtime.current().limiter.check(call.peer, call.header("x-forwarded-for"))
        return await handler(call)

    return checked


def async_handler(route: Route) -> AsyncHandler:
    """The async twin of `route`'s handler; LookupError names a route without one."""
    twin = TWINS.get(route.name)
    if twin is None:
        raise LookupError(f"route {route.method} {route.path} ({route.name}) has no async twin")
    return _limited(twin) if getattr(route.handler, "rate_limited", False) else twin
