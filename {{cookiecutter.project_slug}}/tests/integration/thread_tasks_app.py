"""The real aiohttp app with one test route: a blocking child run moved to a thread.

Loaded by gunicorn as APP_MODULE=thread_tasks_app:create_app (this directory on
PYTHONPATH), by test_event_loop.py only. The service's own tasks await
`aio.processes.run`; code that keeps the sync `processes.run` (subprocess.Popen)
and calls it with `asyncio.to_thread` must get its children's exit codes exactly
too, inside aiohttp's gunicorn worker, where the child is waited for on a thread
while the loop runs signal handlers on the main one.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web

from {{ cookiecutter.package_name }} import processes
from {{ cookiecutter.package_name }}.aiohttp_app import create_app as create_real_app

# nginx proxies every path outside /static/ and /_internal/ to the app; this one sits
# with the API's. At most three digits; the handler refuses what is no exit code.
PATH = r"/api/test/thread-exit/{code:\d{1,3}}"
# Far above a child that only exits: a timeout here is a failure, never a wait.
TIMEOUT_SECONDS = 30


async def thread_exit(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if not 0 <= code <= 255:
        raise web.HTTPNotFound()
    argv = [sys.executable, "-c", f"import sys; sys.exit({code})"]
    done = await asyncio.to_thread(processes.run, argv, TIMEOUT_SECONDS)
    answer = {"returncode": done.returncode, "timed_out": done.timed_out, "worker": os.getpid()}
    return web.json_response(answer)


async def create_app() -> web.Application:
    app = await create_real_app()
    app.router.add_post(PATH, thread_exit)
    return app
