"""What handlers reach through the app: the worker's runtime, and the rate limit."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from ..aio.runtime import AsyncRuntime

# The worker's runtime, opened in its own event loop by `create_app`'s cleanup context.
RUNTIME = web.AppKey("runtime", AsyncRuntime)

R = TypeVar("R", bound=web.StreamResponse)


def rate_limited(
    handler: Callable[[web.Request], Awaitable[R]],
) -> Callable[[web.Request], Awaitable[R]]:
    """For endpoints that cost a lock's time, disk or a child process: one budget per
    client for all of them (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST), shared by every
    worker and host; past it, 429 with Retry-After. Checked before the body is read,
    so a flood of bad requests counts too."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> R:
        limiter = request.app[RUNTIME].limiter
        await limiter.check(request.remote or "", request.headers.get("X-Forwarded-For"))
        return await handler(request)

    return checked
