"""The app's middlewares: every request counted by its route, every error in JSON."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import http_errors, metrics
from ..errors import ServiceError

# nginx refuses larger bodies with 413 first; this guards direct connections.
MAX_BODY_BYTES = 1 << 20
# What aiohttp's own refusals say, as sentences (its reasons are two words).
MESSAGES = {
    404: "There is nothing at this path.",
    405: "This path does not accept that method.",
    413: f"The request body is larger than the {MAX_BODY_BYTES} bytes this service accepts.",
}

log = logging.getLogger(__name__)


@web.middleware
async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts and times every request by its route's pattern. Outermost, so it sees
    the answers json_errors makes of errors, 404s and 405s included."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect json_errors lets through
        status = exc.status
        raise
    except asyncio.CancelledError:
        # The client went away: nothing was answered, nothing is counted.
        status = 0
        raise
    finally:
        if status:
            route = await _route_label(request)
            metrics.observe_request(request.method, route, status, time.perf_counter() - started)


async def _route_label(request: web.Request) -> str:
    """The pattern of the route that served the request, as the router spells it."""
    match_info = request.match_info
    if match_info.route.resource is not None:
        return match_info.route.resource.canonical
    if isinstance(match_info.http_exception, web.HTTPMethodNotAllowed):
        # The path matched, the method did not (a 405, or OPTIONS' 204): the path's resource.
        for candidate in request.app.router.resources():
            _, allowed = await candidate.resolve(request)
            if allowed:
                return candidate.canonical
    return metrics.UNMATCHED


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error in the service's JSON shape, from `http_errors`' table; aiohttp's
    own 404, 405 and 413 included."""
    try:
        return await handler(request)
    except ServiceError as exc:
        status, body, headers = http_errors.answer(exc)
        return web.json_response(body, status=status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # OPTIONS on a route is 204 with Allow, as in every framework; any other
            # method the route lacks is 405 with the same Allow.
            allow = {"Allow": ", ".join(sorted(exc.allowed_methods | {"OPTIONS"}))}
            if request.method == "OPTIONS":
                return web.Response(status=204, headers=allow)
            return refused(405, MESSAGES[405], allow)
        return refused(exc.status, MESSAGES.get(exc.status, exc.reason))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return refused(500, http_errors.INTERNAL_ERROR_MESSAGE)


def refused(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """aiohttp's own refusal (or an unexpected error) in the service's shape and codes."""
    return web.json_response(http_errors.refusal(status, message), status=status, headers=headers)
