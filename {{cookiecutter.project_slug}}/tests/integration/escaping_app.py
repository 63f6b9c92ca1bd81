"""The real app with one test route: a task whose grandchild leaves its session.

Loaded by gunicorn as APP_MODULE=escaping_app:app (this directory on
PYTHONPATH), by test_task_containment.py only. The example tasks start no
such grandchild, and the public API takes no program to run: this route runs
escaping_task.py through the toolkit's `processes.run`, with the path's
parts, each matched against a fixed pattern, as its argv (no shell), and
answers the task's outcome and the worker's pid.
"""

from __future__ import annotations

{% if cookiecutter.framework == "aiohttp" %}
import os
import sys
from pathlib import Path

from aiohttp import web

from {{ cookiecutter.package_name }}.aio import processes
from {{ cookiecutter.package_name }}.aiohttp_app import create_app as create_real_app

# nginx proxies every path outside /static/ and /_internal/ to the app; this one
# sits with the API's.
PATH = (
    "/api/test/escaping-task/{child:wait|exit}/{grandchild:hold|detach}"
    "/{seconds:[0-9]+[.][0-9]+}/{timeout:[0-9]+}"
)
TASK = Path(__file__).with_name("escaping_task.py")


async def escaping_task(request: web.Request) -> web.Response:
    part = request.match_info
    argv = [sys.executable, "-I", str(TASK), part["child"], part["grandchild"], part["seconds"]]
    done = await processes.run(argv, float(part["timeout"]))
    return web.json_response({**done.as_dict(), "worker": os.getpid()})


async def app() -> web.Application:
    """The real app's factory, with the test route added (awaited by aiohttp's worker)."""
    real = await create_real_app()
    real.router.add_post(PATH, escaping_task)
    return real
{% else %}
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from {{ cookiecutter.package_name }} import processes
{% if cookiecutter.framework == "django" %}
from {{ cookiecutter.package_name }}.django_project.wsgi import application as real_app
{% else %}
from {{ cookiecutter.package_name }}.flask_app import create_app

real_app = create_app()
{% endif %}

# nginx proxies every path outside /static/ and /_internal/ to the app; this one
# sits with the API's.
PATH = re.compile(r"/api/test/escaping-task/(wait|exit)/(hold|detach)/([0-9]+[.][0-9]+)/([0-9]+)")
TASK = Path(__file__).with_name("escaping_task.py")


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """The real app, but for the test route, a POST to PATH."""
    match = PATH.fullmatch(environ.get("PATH_INFO", ""))
    if match is None or environ.get("REQUEST_METHOD") != "POST":
        return real_app(environ, start_response)
    child, grandchild, seconds, timeout = match.groups()
    argv = [sys.executable, "-I", str(TASK), child, grandchild, seconds]
    done = processes.run(argv, float(timeout))
    body = json.dumps({**done.as_dict(), "worker": os.getpid()}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
{% endif %}
