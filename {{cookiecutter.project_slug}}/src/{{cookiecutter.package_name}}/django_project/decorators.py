"""The rate limit, as a decorator on the views that cost a lock's time, disk or a child."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from django.http import HttpRequest

from .apps import runtime

P = ParamSpec("P")
R = TypeVar("R")


def rate_limited(
    view: Callable[Concatenate[HttpRequest, P], R],
) -> Callable[Concatenate[HttpRequest, P], R]:
    """One budget per client for every such endpoint (RATE_LIMIT_PER_SECOND,
    RATE_LIMIT_BURST), shared by every worker and host; past it, 429 with
    Retry-After. Checked before the body is read, so a flood of bad requests
    counts too."""

    @functools.wraps(view)
    def checked(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> R:
        peer = request.META.get("REMOTE_ADDR") or ""
        runtime().limiter.check(peer, request.headers.get("X-Forwarded-For"))
        return view(request, *args, **kwargs)

    return checked
