"""The naive implementations the integration proofs must catch.

Loaded by gunicorn instead of the real app (APP_MODULE=naive_app:app) with
NAIVE_VARIANT naming one mistake teams really make:

  local_counter    counters in a module-level dict, one per worker process
  locmem_counter   (Django) the real counters on Django's LocMemCache, one per process
  no_lock          the locked read-modify-write without any lock
  fixed_path       every export written to one fixed path, then moved
  reaping_sigchld  (aiohttp) the real app in a worker with a SIGCHLD handler that
                   reaps any child, as every worker inherited from gunicorn 23's arbiter
  blocking_sleep   (aiohttp) the locked increment holds its lock with time.sleep,
                   blocking the worker's event loop, instead of asyncio.sleep
  per_process_registry
                   /metrics answered from the worker's own registry, as
                   prometheus_client's default one is: the answering worker's share
  uncapped_tasks   every task's child started at once, with no cap on how many a
                   host runs: long tasks hold every worker and a burst every byte

NAIVE_PACKAGE is the generated package and NAIVE_APP the real app
("module:attribute", e.g. "<package>.django_project.wsgi:application", or
"<package>.aiohttp_app:create_app", an async factory, or
"<package>.flask_app:create_app()", called here). Each variant swaps one
endpoint for a naive one: in a Flask project the view of the app's blueprint,
in a Django project the view of `django_project.examples.views` its URLconf
routes to, in an aiohttp project the handler of the app's route table
(`aiohttp_app.examples.routes`); or, for locmem_counter, Django's cache
setting, or, for reaping_sigchld, the worker's SIGCHLD disposition, or, for
per_process_registry, the /metrics endpoint; everything
else is the real service.
"""

import asyncio
import hashlib
import importlib
import itertools
import json
import os
import signal
import time

_package = os.environ["NAIVE_PACKAGE"]
handlers = importlib.import_module(f"{_package}.examples.handlers")
inputs = importlib.import_module(f"{_package}.inputs")
runtime = importlib.import_module(f"{_package}.runtime")
replies = importlib.import_module(f"{_package}.replies")
processes = importlib.import_module(f"{_package}.processes")

_counters: dict[str, int] = {}
_fences = itertools.count(1)


def local_incr(call):
    name = inputs.check_name(call.params["name"])
    body = inputs.body("incr_counter", call.body)
    _counters[name] = _counters.get(name, 0) + body.get("by", 1)
    return replies.json_reply(200, {"name": name, "value": _counters[name]})


def local_get(call):
    name = call.params["name"]
    return replies.json_reply(200, {"name": name, "value": _counters.get(name, 0)})


def unlocked_increment(call):
    name = call.params["name"]
    body = inputs.body("locked_increment", call.body)
    state = runtime.current().state
    key = f"naive:{name}"
    value = int(state.get(key) or 0) + 1
    time.sleep(body.get("hold_ms", 0) / 1000)
    state.set(key, str(value))
    return replies.json_reply(200, {"name": name, "value": value, "fencing_token": next(_fences)})


def fixed_path_export(call):
    return write_to_fixed_path(call, runtime.current().exports)


def write_to_fixed_path(call, store):
    body = inputs.body("create_export", call.body)
    store.work.mkdir(parents=True, exist_ok=True)
    fixed = store.work / "export.txt"
    export_id = os.urandom(16).hex()
    digest = hashlib.sha256()
    with open(fixed, "wb") as out:
        head = f"label={body['label']}\n".encode()
        out.write(head)
        digest.update(head)
        left = body["size_bytes"] - len(head)
        while left > 0:
            chunk = b"x" * min(left, 1 << 16)
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    target = store.files / export_id
    target.mkdir(parents=True)
    os.replace(fixed, target / "data")
    meta = {
        "id": export_id,
        "label": body["label"],
        "size": body["size_bytes"],
        "sha256": digest.hexdigest(),
        "filename": f"{body['label']}.txt",
        "content_type": "text/plain; charset=utf-8",
    }
    (target / "meta.json").write_text(json.dumps(meta))
    return replies.json_reply(201, handlers._export_view(meta))


def uncapped_task(call):
    task, argv, timeout = handlers.task_request(call)
    return handlers.task_reply(task, processes.run(argv, timeout))


def use_locmem_cache():
    """Django's default when CACHES is unset: a private copy in every process.

    The settings module is imported first and changed before Django reads it
    (Django imports it by name and gets this same module object).
    """
    settings = importlib.import_module(f"{_package}.django_project.settings")
    private = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    # The counters' alias too: the naive project keeps them where it keeps the rest.
    settings.CACHES = {"default": private, settings.STATE_CACHE_ALIAS: private}


# The aiohttp app's handlers await the toolkit's async twins; these make the same
# mistakes on its event loop, given the request's `Call` and the app's runtime
# (`as_aiohttp_handler`). They import the package's `aio` modules only when called,
# so only in an aiohttp project.


async def async_local_incr(call, rt):
    return local_incr(call)


async def async_local_get(call, rt):
    return local_get(call)


async def async_unlocked_increment(call, rt):
    name = call.params["name"]
    body = inputs.body("locked_increment", call.body)
    state = rt.state
    key = f"naive:{name}"
    value = int(await state.get(key) or 0) + 1
    await asyncio.sleep(body.get("hold_ms", 0) / 1000)
    await state.set(key, str(value))
    return replies.json_reply(200, {"name": name, "value": value, "fencing_token": next(_fences)})


async def async_fixed_path_export(call, rt):
    return await rt.files(write_to_fixed_path, call, rt.exports)


async def blocking_locked_increment(call, rt):
    """The real handler, but the hold is time.sleep: the whole worker stops meanwhile."""
    name, hold = handlers.locked_increment_request(call)
    locks = rt.locks
    async with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        value = handlers.next_value(await locks.read_fenced(name, handlers.GUARDED_KEY))
        time.sleep(hold)
        await locks.write_fenced(lease, handlers.GUARDED_KEY, str(value))
    return handlers.locked_reply(name, value, lease.fence)


async def async_uncapped_task(call, rt):
    task, argv, timeout = handlers.task_request(call)
    aio_processes = importlib.import_module(f"{_package}.aio.processes")
    return handlers.task_reply(task, await aio_processes.run(argv, timeout))


def per_process_scrape(call):
    """/metrics from this worker's own registry, nobody adding the workers up: the
    values it reads are this process's (prometheus_client's default registry does
    the same), so each scrape shows the share of the worker that answered it."""
    from prometheus_client import generate_latest

    metrics = importlib.import_module(f"{_package}.metrics")
    return replies.text_reply(200, generate_latest(metrics._REGISTRY), metrics.CONTENT_TYPE)


async def async_per_process_scrape(call, rt):
    return per_process_scrape(call)


def as_aiohttp_handler(naive):
    """A naive async function of (call, runtime) as an aiohttp handler: the aiohttp
    app routes to handlers of requests."""
    from aiohttp import web

    runtime_key = importlib.import_module(f"{_package}.aiohttp_app.context").RUNTIME

    async def handler(request):
        body = await request.read()
        call = replies.Call.of(request.match_info, body, request.headers.items(), request.remote)
        reply = await naive(call, request.app[runtime_key])
        if reply.raw is not None:
            return web.Response(body=reply.raw, status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status)

    return handler


def swap_aiohttp_handlers(module, naive_by_name):
    """Rebuild `module.routes`, the aiohttp app's RouteTableDef, with the naive handler
    mounted in place of the real one of the same name. The app reads `module.routes`
    when `create_app` is awaited, in the worker, after this."""
    from aiohttp import web

    rebuilt = web.RouteTableDef()
    for route in module.routes:
        handler = route.handler
        if handler.__name__ in naive_by_name:
            name = handler.__name__
            handler = as_aiohttp_handler(naive_by_name[name])
            handler.__name__ = name
        rebuilt.route(route.method, route.path, **route.kwargs)(handler)
    module.routes = rebuilt


def reap_any_child(signum, frame):
    """gunicorn 23's arbiter handler as a worker inherited it: reap whatever child ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


def reaping(factory):
    """The app factory, run after the handler is installed. gunicorn.conf.py's
    post_worker_init (and aiohttp's worker) reset SIGCHLD before the worker awaits
    the factory, so only a handler installed here survives into the serving loop."""

    async def app():
        signal.signal(signal.SIGCHLD, reap_any_child)
        return await factory()

    return app


_VARIANTS = {
    "local_counter": {"incr_counter": local_incr, "get_counter": local_get},
    "locmem_counter": {},
    "no_lock": {"locked_increment": unlocked_increment},
    "fixed_path": {"create_export": fixed_path_export},
    "reaping_sigchld": {},
    "blocking_sleep": {},
    "per_process_registry": {},
    "uncapped_tasks": {"run_task": uncapped_task},
}
_ASYNC_VARIANTS = {
    "local_counter": {"incr_counter": async_local_incr, "get_counter": async_local_get},
    "no_lock": {"locked_increment": async_unlocked_increment},
    "fixed_path": {"create_export": async_fixed_path_export},
    "reaping_sigchld": {},
    "blocking_sleep": {"locked_increment": blocking_locked_increment},
    "per_process_registry": {},
    "uncapped_tasks": {"run_task": async_uncapped_task},
}


def as_flask_view(naive):
    """A naive handler as a Flask view: the Flask app routes to views, not handlers."""
    from flask import Response, request

    def view(**params):
        peer = request.remote_addr
        reply = naive(replies.Call.of(params, request.get_data(), request.headers.items(), peer))
        if reply.raw is not None:
            return Response(reply.raw, status=reply.status, headers=dict(reply.headers))
        return Response(json.dumps(reply.body), status=reply.status, mimetype="application/json")

    return view


def as_django_view(naive):
    """A naive handler as a Django view: the Django URLconf routes to views, not handlers."""
    from django.http import HttpResponse
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def view(request, **params):
        peer = request.META.get("REMOTE_ADDR")
        reply = naive(replies.Call.of(params, request.body, request.headers.items(), peer))
        if reply.raw is not None:
            return HttpResponse(reply.raw, status=reply.status, headers=dict(reply.headers))
        body = json.dumps(reply.body)
        return HttpResponse(body, status=reply.status, content_type="application/json")

    return view


_variant = os.environ["NAIVE_VARIANT"]
_framework = importlib.import_module(_package).FRAMEWORK
_flask = _framework == "flask"
_django = _framework == "django"
_aiohttp = _framework == "aiohttp"
if _variant == "locmem_counter" and not _django:
    raise SystemExit("NAIVE_VARIANT=locmem_counter needs a Django project.")
if _variant in {"reaping_sigchld", "blocking_sleep"} and not _aiohttp:
    raise SystemExit(f"NAIVE_VARIANT={_variant} needs an aiohttp project.")

# Swapped before the app (and so the route table) is imported; Flask's views below.
for _name, _function in _VARIANTS[_variant].items():
    _function.__name__ = _name
    setattr(handlers, _name, _function)
if _aiohttp:
    # The aiohttp app mounts the handlers of its modules' route tables: swap those.
    _examples = importlib.import_module(f"{_package}.aiohttp_app.examples")
    swap_aiohttp_handlers(_examples, _ASYNC_VARIANTS[_variant])
    if _variant == "per_process_registry":
        _health = importlib.import_module(f"{_package}.aiohttp_app.health")
        swap_aiohttp_handlers(_health, {"scrape": async_per_process_scrape})
elif _variant == "per_process_registry":
    # The route table reads health.scrape when it is imported (with the app, below).
    per_process_scrape.__name__ = "scrape"
    importlib.import_module(f"{_package}.health").scrape = per_process_scrape
if _django:
    if _variant == "locmem_counter":
        use_locmem_cache()
    # Django's URLconf routes to the views of these modules, read when the URLconf is
    # imported (by the app's wsgi module, below): swap the views.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{_package}.django_project.settings")
    _views = importlib.import_module(f"{_package}.django_project.examples.views")
    for _name, _function in _VARIANTS[_variant].items():
        setattr(_views, _name, as_django_view(_function))
    if _variant == "per_process_registry":
        _health = importlib.import_module(f"{_package}.django_project.views")
        _health.scrape = as_django_view(per_process_scrape)

_module, _attribute = os.environ["NAIVE_APP"].split(":")
app = getattr(importlib.import_module(_module), _attribute.removesuffix("()"))
if _attribute.endswith("()"):
    app = app()
if _flask:
    # Flask routes each endpoint to a view of its blueprint: swap the views.
    for _name, _function in _VARIANTS[_variant].items():
        app.view_functions[f"examples.{_name}"] = as_flask_view(_function)
    if _variant == "per_process_registry":
        app.view_functions["health.scrape"] = as_flask_view(per_process_scrape)
if _variant == "reaping_sigchld":
    app = reaping(app)
