"""Async twins of `health`'s answers."""

from __future__ import annotations

from .. import health
from ..errors import BackendUnavailable
from ..replies import Call, Reply
from . import runtime


async def healthz(call: Call) -> Reply:
    return health.healthz(call)


async def readyz(call: Call) -> Reply:
    try:
        await runtime.current().state.ping()
    except BackendUnavailable as exc:
        return health.unready(exc)
    return health.READY
