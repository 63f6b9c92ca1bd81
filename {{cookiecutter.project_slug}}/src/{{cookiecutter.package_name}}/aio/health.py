"""Async twins of `health`'s answers."""

from __future__ import annotations

import asyncio

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


async def openapi(call: Call) -> Reply:
    # Bytes encoded once per process: nothing to wait for.
    return health.openapi(call)


async def scrape(call: Call) -> Reply:
    # It reads every worker's files: off the loop, and not on the files pool, where
    # it would wait behind export writes (a scrape has its own timeout).
    return await asyncio.to_thread(health.scrape, call)
