"""The example endpoints' async twins, for the aiohttp adapter.

Each reads its request and builds its answer with the same functions as its
sync twin in `handlers`; only the doing in between is awaited. Nothing here
blocks the loop: the backend is awaited (redis.asyncio, or SQLite on the
store pool), a held lock waits with `asyncio.sleep`, an export is written on
the files pool, and a child runs through `asyncio.create_subprocess_exec`.
"""

from __future__ import annotations

import asyncio

from ..aio import processes
from ..aio import runtime as aio_runtime
from ..inputs import check_name
from ..replies import Call, Reply
from . import handlers
from .handlers import (
    GUARDED_KEY,
    LONG_WORK,
    counter_reply,
    export_reply,
    export_request,
    increment_request,
    locked_increment_request,
    locked_reply,
    next_value,
    task_reply,
    task_request,
)


async def worker(call: Call) -> Reply:
    return handlers.worker(call)


async def incr_counter(call: Call) -> Reply:
    name, by, key = increment_request(call)
    rt = aio_runtime.current()
    if key is None:
        value = await rt.state.incr(name, by)
    else:
        value = await rt.state.incr_once(name, by, key, rt.settings.idempotency_ttl)
    return counter_reply(name, value)


async def get_counter(call: Call) -> Reply:
    name = check_name(call.params["name"])
    return counter_reply(name, await aio_runtime.current().state.get_counter(name))


async def locked_increment(call: Call) -> Reply:
    name, hold = locked_increment_request(call)
    rt = aio_runtime.current()
    locks = rt.locks
    async with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        value = next_value(await locks.read_fenced(name, GUARDED_KEY))
        await asyncio.sleep(hold)
        await locks.write_fenced(lease, GUARDED_KEY, str(value))
    return locked_reply(name, value, lease.fence)


async def create_export(call: Call) -> Reply:
    rt = aio_runtime.current()
    # Parsed on the loop (small); written on the files pool, chunk by chunk.
    meta = await rt.files(rt.exports.create, **export_request(call))
    return export_reply(meta, 201)


async def get_export(call: Call) -> Reply:
    rt = aio_runtime.current()
    return export_reply(await rt.files(rt.exports.get, call.params["export_id"]))


async def download_export(call: Call) -> Reply:
    rt = aio_runtime.current()
    meta = await rt.files(rt.exports.get, call.params["export_id"])
    return handlers.download(rt.settings, rt.exports, meta)


async def run_task(call: Call) -> Reply:
    task, argv, timeout = task_request(call)
    with aio_runtime.current().slots.hold(LONG_WORK):
        return task_reply(task, await processes.run(argv, timeout))


# Every sync handler of `handlers` that a route mounts, by name.
TWINS = {
    handler.__name__: handler
    for handler in (
        worker,
        incr_counter,
        get_counter,
        locked_increment,
        create_export,
        get_export,
        download_export,
        run_task,
    )
}
