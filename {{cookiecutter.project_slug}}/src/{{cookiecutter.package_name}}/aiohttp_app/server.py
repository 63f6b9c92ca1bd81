"""Two corrections to aiohttp's server, applied by `create_app` in each worker."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web, web_runner
from aiohttp.web_protocol import RequestHandler

from .. import http_errors
from .middleware import refused

# A stopping worker lets the connections it accepted last start this long before it
# closes its connections (see settle_before_closing).
SETTLE_SECONDS = 0.25


def answer_own_errors_in_json() -> None:
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
            response = refused(500, http_errors.INTERNAL_ERROR_MESSAGE)
        else:
            phrase = HTTPStatus(status).phrase  # aiohttp refuses with standard codes only
            message = f"The server refused the request before reading it ({phrase})."
            response = refused(status, message)
        response.force_close()
        return response

    handle_error.answers_json = True  # type: ignore[attr-defined]
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


def settle_before_closing() -> None:
    """A connection accepted just before a worker stops (recycled, reloaded, TERM)
    gets its request handler a loop iteration or two later. aiohttp 3.14 marks every
    connection closing as soon as its sites stop, and one marked before its handler
    started ignores the request that then arrives: the request waits out the whole
    shutdown timeout (seen: 8 requests hung until their clients gave up, at each
    reload under load). So the sites stop first, those connections get
    SETTLE_SECONDS to start, and only then does aiohttp's own cleanup close them,
    letting every request it has read finish."""
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
