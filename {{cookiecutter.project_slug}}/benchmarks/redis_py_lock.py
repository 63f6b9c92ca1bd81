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
{% else %}
import os
import time

import redis

from {{ cookiecutter.package_name }} import runtime
from {{ cookiecutter.package_name }}.examples import handlers

KEY_PREFIX = "bench:redis-py-lock"
_clients = {}


def client():
    """One client per worker process (a pool must not cross a fork)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _clients[pid]


def locked_increment(call):
    name, hold = handlers.locked_increment_request(call)
    settings = runtime.current().settings
    store = client()
    lock = store.lock(
        f"{KEY_PREFIX}:lock:{name}", timeout=settings.lock_ttl, blocking_timeout=settings.lock_wait
    )
    key = f"{KEY_PREFIX}:value:{name}"
    with lock:
        value = handlers.next_value(store.get(key))
        time.sleep(hold)
        store.set(key, value)
    return handlers.locked_reply(name, value, 0)


# Swapped before the app, and so its route table, is imported: the route keeps
# its rate limit.
handlers.locked_increment = locked_increment
{% if cookiecutter.framework == "django" %}
from {{ cookiecutter.package_name }}.django_project.wsgi import application as app  # noqa: E402, F401
{% else %}
from {{ cookiecutter.package_name }}.flask_app import app  # noqa: E402, F401
{% endif %}
{% endif %}
