"""What watches the service: liveness, readiness, metrics and the API's description.

`/healthz` says the process is up and touches nothing; `/readyz` asks the
shared-state backend, so a worker that cannot reach it is taken out of
rotation instead of failing requests; `/metrics` adds up every worker's
figures (`metrics`), and nginx lets only the scraper's addresses read it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .. import metrics
from .. import openapi as description
from ..errors import BackendUnavailable
from .context import RUNTIME

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[RUNTIME].state.ping()
    except BackendUnavailable as exc:
        unready = {"status": "unavailable", "checks": {"state": exc.reason}}
        return web.json_response(unready, status=503)
    return web.json_response({"status": "ok", "checks": {"state": "ok"}})


@routes.get("/metrics")
async def scrape(request: web.Request) -> web.Response:
    # It reads every worker's files: off the loop, and not on the files pool, where
    # it would wait behind export writes (a scrape has its own timeout).
    content, content_type = await asyncio.to_thread(metrics.exposition)
    return web.Response(body=content, headers={"Content-Type": content_type})


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    # Bytes encoded once per process: nothing to wait for.
    return web.Response(body=description.document_bytes(), content_type="application/json")
