"""What views reach through the app: the worker's runtime, and the rate limit."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import current_app, request

from ..runtime import Runtime

# The key of the worker's runtime in `app.extensions`.
RUNTIME = "runtime"

P = ParamSpec("P")
R = TypeVar("R")


def runtime() -> Runtime:
    """The runtime `create_app` opened for this app."""
    opened: Runtime = current_app.extensions[RUNTIME]
    return opened


def rate_limited(view: Callable[P, R]) -> Callable[P, R]:
    """For endpoints that cost a lock's time, disk or a child process: one budget per
    client for all of them (RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST), shared by every
    worker and host; past it, 429 with Retry-After. Checked before the body is read,
    so a flood of bad requests counts too."""

    @functools.wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        runtime().limiter.check(request.remote_addr or "", request.headers.get("X-Forwarded-For"))
        return view(*args, **kwargs)

    return checked
