"""The service with its locked increment under redis-py's own `Lock` instead of ours.

The reference for the locks measure: the same read, hold and write of the
same key, in the same handler, behind the same rate limit, but locked the way
redis-py's documentation shows (`client.lock(...)`, its defaults otherwise),
with no fencing token. gunicorn loads it as APP_MODULE=redis_py_lock:{{ 'create_app' if cookiecutter.framework == 'aiohttp' else 'app' }}.
"""

{% if cookiecutter.framework == "aiohttp" %}
import asyncio
import os

import redis.asyncio
from aiohttp import web

from {{ cookiecutter.package_name }} import inputs
from {{ cookiecutter.package_name }}.aiohttp_app import create_app, examples
from {{ cookiecutter.package_name }}.aiohttp_app.context import RUNTIME, rate_limited
from {{ cookiecutter.package_name }}.examples import counting
from {{ cookiecutter.package_name }}.inputs import check_name

KEY_PREFIX = "bench:redis-py-lock"
_clients = {}


def client():
    """One client per worker's event loop, as the service keeps its own."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    return _clients[loop]


@rate_limited
async def locked_increment(request: web.Request) -> web.Response:
    name = check_name(request.match_info["name"])
    body = inputs.body("locked_increment", await request.read())
    settings = request.app[RUNTIME].settings
    store = client()
    # A new Lock per request: one shared Lock object keeps its token in a
    # threading.local that every task on the loop shares.
    lock = store.lock(
        f"{KEY_PREFIX}:lock:{name}", timeout=settings.lock_ttl, blocking_timeout=settings.lock_wait
    )
    key = f"{KEY_PREFIX}:value:{name}"
    async with lock:
        value = counting.next_value(await store.get(key))
        await asyncio.sleep(int(body.get("hold_ms", 0)) / 1000)
        await store.set(key, value)
    return web.json_response({"name": name, "value": value, "fencing_token": 0})


# The service's route table, with this handler (behind the same rate limit) in
# place of its own; create_app reads it when gunicorn's worker awaits the factory.
_routes = web.RouteTableDef()
for _route in examples.routes:
    _handler = locked_increment if _route.handler.__name__ == "locked_increment" else _route.handler
    _routes.route(_route.method, _route.path, **_route.kwargs)(_handler)
examples.routes = _routes
__all__ = ["create_app"]
{% elif cookiecutter.framework == "django" %}
import os
import time

import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from {{ cookiecutter.package_name }} import inputs
from {{ cookiecutter.package_name }}.django_project.apps import runtime
from {{ cookiecutter.package_name }}.django_project.decorators import rate_limited
from {{ cookiecutter.package_name }}.django_project.examples import views
from {{ cookiecutter.package_name }}.examples import counting
from {{ cookiecutter.package_name }}.inputs import check_name

KEY_PREFIX = "bench:redis-py-lock"
# redis-py's pool notices a fork and opens new connections in each worker.
store = redis.Redis.from_url(os.environ["REDIS_URL"])


@csrf_exempt
@require_POST
@rate_limited
def locked_increment(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    hold = int(inputs.body("locked_increment", request.body).get("hold_ms", 0)) / 1000
    settings = runtime().settings
    lock = store.lock(
        f"{KEY_PREFIX}:lock:{name}", timeout=settings.lock_ttl, blocking_timeout=settings.lock_wait
    )
    key = f"{KEY_PREFIX}:value:{name}"
    with lock:
        value = counting.next_value(store.get(key))
        time.sleep(hold)
        store.set(key, value)
    return JsonResponse({"name": name, "value": value, "fencing_token": 0})


# Swapped before the URLconf, which the app's module imports, routes to it: the
# service's route, behind the same rate limit, with this view in place of its own.
views.locked_increment = locked_increment
from {{ cookiecutter.package_name }}.django_project.wsgi import application as app  # noqa: E402, F401
{% elif cookiecutter.framework == "flask" %}
import os
import time

import redis
from flask import request

from {{ cookiecutter.package_name }} import inputs
from {{ cookiecutter.package_name }}.examples import counting
from {{ cookiecutter.package_name }}.flask_app import create_app
from {{ cookiecutter.package_name }}.flask_app.context import rate_limited, runtime
from {{ cookiecutter.package_name }}.inputs import check_name

KEY_PREFIX = "bench:redis-py-lock"
# redis-py's pool notices a fork and opens new connections in each worker.
store = redis.Redis.from_url(os.environ["REDIS_URL"])


@rate_limited
def locked_increment(name: str) -> dict[str, object]:
    check_name(name)
    hold = int(inputs.body("locked_increment", request.get_data()).get("hold_ms", 0)) / 1000
    settings = runtime().settings
    lock = store.lock(
        f"{KEY_PREFIX}:lock:{name}", timeout=settings.lock_ttl, blocking_timeout=settings.lock_wait
    )
    key = f"{KEY_PREFIX}:value:{name}"
    with lock:
        value = counting.next_value(store.get(key))
        time.sleep(hold)
        store.set(key, value)
    return {"name": name, "value": value, "fencing_token": 0}


app = create_app()
# The service's route, behind the same rate limit, with this view in place of its own.
app.view_functions["examples.locked_increment"] = locked_increment
{% endif %}
