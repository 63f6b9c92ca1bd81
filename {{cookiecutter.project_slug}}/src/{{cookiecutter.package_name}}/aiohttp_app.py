"""The aiohttp adapter: the route table mounted in aiohttp, and one way to answer.

gunicorn's aiohttp worker awaits `create_app` inside each worker's event
loop. Everything bound to that loop (the Redis client, the thread pools) is
opened by the cleanup context below, in the worker, and closed there when it
stops; nothing is opened at import or in the gunicorn master. A view here
only hands the path parameters, body and headers to a handler's async twin
(`aio.routes`) and turns its `Reply` into an aiohttp response.

Nothing on the loop may block: one blocking call stalls every request this
worker holds. The handlers await the toolkit's async twins (`aio`), which
run whatever must block on thread pools of their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

from aiohttp import web, web_runner
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from . import config, metrics, routes, runtime
from .aio import routes as aio_routes
from .aio import runtime as aio_runtime
from .errors import ServiceError
from .replies import Call, Reply, error_reply, internal_error_reply, status_reply

# nginx refuses larger bodies with 413 first; this guards direct connections.
MAX_BODY_BYTES = 1 << 20
# The worker's runtime, for code that prefers `request.app[RUNTIME]` to `aio.runtime.current()`.
RUNTIME = web.AppKey("runtime", aio_runtime.AsyncRuntime)
# A stopping worker lets the connections it accepted last start this long before it
# closes its connections (see _settle_before_closing).
SETTLE_SECONDS = 0.25
# What aiohttp's own refusals say, as sentences (its reasons are two words).
MESSAGES = {
    404: "There is nothing at this path.",
    405: "This path does not accept that method.",
    413: f"The request body is larger than the {MAX_BODY_BYTES} bytes this service accepts.",
}

log = logging.getLogger(__name__)


def to_response(reply: Reply) -> web.StreamResponse:
    """The one place a `Reply` becomes an aiohttp response."""
    if reply.file is not None:
        # Sent by the loop with sendfile, never read into memory or blocking it.
        response: web.StreamResponse = web.FileResponse(reply.file, status=reply.status)
        response.headers.update(reply.headers)
        return response
    if reply.raw is not None:
        return web.Response(status=reply.status, body=reply.raw, headers=reply.headers)
    if reply.body is None:
        # An empty body and no type unless the reply names one (a download's).
        return web.Response(status=reply.status, headers=reply.headers)
    response = web.Response(
        status=reply.status, body=json.dumps(reply.body).encode(), headers=reply.headers
    )
    response.content_type = "application/json"
    return response


def _aiohttp_path(path: str) -> str:
    # aiohttp matches a path with an encoded slash still encoded ("a%2Fb" is one
    # segment) and hands the parameter over decoded ("a/b"). A parameter may hold
    # no encoded slash, so such a path routes nowhere (404), as in every adapter.
    return routes.PARAM.sub(r"{\1:(?:[^/%]|%(?!2[Ff]))+}", path)


def _view(handler: Callable[[Call], Awaitable[Reply]]) -> Handler:
    async def view(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        call = Call.of(request.match_info, body, request.headers.items(), request.remote)
        return to_response(await handler(call))

    view.__name__ = handler.__name__
    return view


def _allow(exc: web.HTTPException) -> str:
    allowed = set(getattr(exc, "allowed_methods", ()) or ())
    return ", ".join(sorted(allowed | {"OPTIONS"}))


def counted(route_of: metrics.RouteLabels) -> Middleware:
    """Middleware that counts and times every request by route pattern (outermost,
    so it sees the answers json_errors makes of errors, 404s included)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
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
                seconds = time.perf_counter() - started
                metrics.observe_request(request.method, route_of(request.path), status, seconds)

    return count


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error in the service's JSON shape, aiohttp's own 404, 405 and 413 included."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return to_response(error_reply(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 405:
            # OPTIONS on a route is 204 with Allow, as in every adapter; any other
            # method the route lacks is 405 with the same Allow.
            headers = {"Allow": _allow(exc)}
            if request.method == "OPTIONS":
                return to_response(Reply(204, None, headers))
            return to_response(status_reply(405, MESSAGES[405], headers))
        message = MESSAGES.get(exc.status, exc.reason)
        return to_response(status_reply(exc.status, message))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return to_response(internal_error_reply())


def _answer_own_errors_in_json() -> None:
    """aiohttp refuses some requests itself, before any middleware sees them (a
    control character in a header value, which nginx lets through), with a
    text/plain page that echoes the offending line. It has no setting for that
    page, so its one writer, `RequestHandler.handle_error`, is wrapped: it still
    logs and closes the connection, and answers in the service's JSON error
    shape, echoing nothing of the request."""
    original = RequestHandler.handle_error
    if getattr(original, "answers_json", False):
        return

    def handle_error(
        self: RequestHandler,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        original(self, request, status, exc, message)  # logs; raises if already sent
        if status >= 500:
            reply = internal_error_reply()
        else:
            phrase = HTTPStatus(status).phrase  # aiohttp refuses with standard codes only
            message = f"The server refused the request before reading it ({phrase})."
            reply = status_reply(status, message)
        response = to_response(reply)
        response.force_close()
        return response

    handle_error.answers_json = True  # type: ignore[attr-defined]
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


def _settle_before_closing() -> None:
    """A connection accepted just before a worker stops (recycled, reloaded, TERM)
    gets its request handler a loop iteration or two later. aiohttp 3.14 marks every
    connection closing as soon as its sites stop, and one marked before its handler
    started ignores the request that then arrives: the request waits out the whole
    shutdown timeout, or until its client gives up. So the sites stop first, those
    connections get SETTLE_SECONDS to start, and only then does aiohttp's own
    cleanup close them, letting every request it has read finish."""
    original = web_runner.BaseRunner.cleanup
    if getattr(original, "settles", False):
        return

    async def cleanup(self: web_runner.BaseRunner) -> None:
        for site in list(self.sites):
            await site.stop()
        await asyncio.sleep(SETTLE_SECONDS)
        await original(self)

    cleanup.settles = True  # type: ignore[attr-defined]
    web_runner.BaseRunner.cleanup = cleanup  # type: ignore[method-assign]


def _settings() -> config.Settings:
    """The settings, or the worker stops with one sentence (gunicorn then stops too)."""
    with runtime.config_errors_stop_the_worker():
        return config.load()


async def create_app() -> web.Application:
    settings = _settings()
    _answer_own_errors_in_json()
    _settle_before_closing()

    async def open_runtime(app: web.Application) -> AsyncIterator[None]:
        with runtime.config_errors_stop_the_worker():
            async with aio_runtime.opened(settings) as opened:
                app[RUNTIME] = opened
                yield

    route_of = metrics.RouteLabels(route.path for route in routes.ROUTES)
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[counted(route_of), json_errors]
    )
    app.cleanup_ctx.append(open_runtime)
    for route in routes.ROUTES:
        view = _view(aio_routes.async_handler(route))
        if route.method == "GET":
            app.router.add_get(_aiohttp_path(route.path), view)  # HEAD too, as elsewhere
        else:
            app.router.add_route(route.method, _aiohttp_path(route.path), view)
    return app
