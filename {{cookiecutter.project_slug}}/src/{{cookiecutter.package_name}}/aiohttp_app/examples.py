"""The example endpoints: each shows one multi-worker pitfall solved with the toolkit.

Counters live in the shared store, not in a worker's memory; the locked
increment is a read-modify-write made safe by a cross-process lock and its
fencing token; exports are written privately and published whole, and nginx
sends them; a task's child keeps its real exit code and is killed with its
group on timeout.

Nothing here blocks the loop: the backend is awaited (redis.asyncio, or SQLite
on the store pool), a held lock waits with `asyncio.sleep`, an export is
written on the files pool, and a child runs through the loop's subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import socket

from aiohttp import web

from .. import FRAMEWORK, inputs
from ..aio import processes
from ..examples import counting, tasks
from ..examples import exports as example_exports
from ..inputs import check_idempotency_key, check_name
from .context import RUNTIME, rate_limited

routes = web.RouteTableDef()
# A path parameter is one segment with no encoded slash in it: aiohttp would match
# "a%2Fb" as one segment and hand it over as "a/b". Such a path routes nowhere (404),
# as in the other frameworks, rather than to a route of another method (405).
NAME = "{name:(?:[^/%]|%(?!2[Ff]))+}"
EXPORT_ID = "{export_id:(?:[^/%]|%(?!2[Ff]))+}"


@routes.get("/api/worker")
async def worker(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "pid": os.getpid(),
            # Containers reuse pids (every replica's workers are 7, 8, ...): the
            # host tells them apart.
            "host": socket.gethostname(),
            # gunicorn.conf.py's post_worker_init records the class that really runs.
            "worker_class": os.environ.get("APP_WORKER_CLASS", "unknown"),
            "framework": FRAMEWORK,
        }
    )


@routes.post(f"/api/counters/{NAME}/incr")
async def incr_counter(request: web.Request) -> web.Response:
    name = check_name(request.match_info["name"])
    body = inputs.body("incr_counter", await request.read())
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    rt, by = request.app[RUNTIME], int(body.get("by", 1))
    if key is None:
        value = await rt.state.incr(name, by)
    else:
        # A retry of a request whose answer was lost (or a 503) counts once in all.
        value = await rt.state.incr_once(name, by, key, rt.settings.idempotency_ttl)
    return web.json_response({"name": name, "value": value})


@routes.get(f"/api/counters/{NAME}")
async def get_counter(request: web.Request) -> web.Response:
    name = check_name(request.match_info["name"])
    value = await request.app[RUNTIME].state.get_counter(name)
    return web.json_response({"name": name, "value": value})


@routes.post(f"/api/locked-increment/{NAME}")
@rate_limited
async def locked_increment(request: web.Request) -> web.Response:
    name = check_name(request.match_info["name"])
    body = inputs.body("locked_increment", await request.read())
    rt = request.app[RUNTIME]
    locks = rt.locks
    async with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        value = counting.next_value(await locks.read_fenced(name, counting.GUARDED_KEY))
        await asyncio.sleep(int(body.get("hold_ms", 0)) / 1000)
        await locks.write_fenced(lease, counting.GUARDED_KEY, str(value))
    return web.json_response({"name": name, "value": value, "fencing_token": lease.fence})


@routes.post("/api/exports")
@rate_limited
async def create_export(request: web.Request) -> web.Response:
    body = inputs.body("create_export", await request.read())
    rt = request.app[RUNTIME]
    # Parsed on the loop (small); written on the files pool, chunk by chunk.
    meta = await rt.files(rt.exports.create, **example_exports.create_args(body))
    return web.json_response(example_exports.public(meta), status=201)


@routes.get(f"/api/exports/{EXPORT_ID}")
async def get_export(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    meta = await rt.files(rt.exports.get, request.match_info["export_id"])
    return web.json_response(example_exports.public(meta))


@routes.get(f"/api/exports/{EXPORT_ID}/download")
async def download_export(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    meta = await rt.files(rt.exports.get, request.match_info["export_id"])
    headers = {
        "Content-Type": meta["content_type"],
        "Content-Disposition": example_exports.attachment(meta),
    }
    if rt.settings.export_delivery == "direct":
        # No nginx in front (make run): the loop sends the file with sendfile.
        return web.FileResponse(rt.exports.data_path(meta), headers=headers)
    # nginx sends the file from its internal location; the worker sends no bytes.
    return web.Response(headers={"X-Accel-Redirect": rt.exports.accel_path(meta), **headers})


@routes.post("/api/tasks/run")
@rate_limited
async def run_task(request: web.Request) -> web.Response:
    document = inputs.parse_json(await request.read())
    tasks.check_known(document)
    task = inputs.validate("run_task", document)
    argv, timeout = tasks.task_argv(task)
    # A child holds a slot to its end: past the host's cap, 503 at once. Taking one
    # never waits (a non-blocking flock), so it is taken on the loop.
    with request.app[RUNTIME].slots.hold(tasks.LONG_WORK):
        done = await processes.run(argv, timeout)
    return web.json_response({"task": task["task"], **done.as_dict()})
