"""The framework's hello world, the floor the service's own overhead is measured from.

gunicorn loads it (APP_MODULE=hello:{{ 'create_app' if cookiecutter.framework == 'aiohttp' else 'app' }}) with the project's gunicorn.conf.py, behind
the same nginx: only the application differs. It answers /healthz, which the
stack waits for, and /api/worker with the worker's pid, as the service does;
and a counter increment that is one redis-py INCRBY on the same Redis, with no
validation, idempotency or breaker: the floor for the service's increments.
"""

import json
import os
{% if cookiecutter.framework == "flask" %}

import redis
from flask import Flask, jsonify, request

app = Flask(__name__)
# redis-py's pool notices a fork and opens new connections in each worker.
store = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.get("/api/worker")
def worker():
    return jsonify(pid=os.getpid())


@app.post("/api/counters/<name>/incr")
def incr(name):
    by = json.loads(request.get_data() or b"{}").get("by", 1)
    return jsonify(name=name, value=store.incrby(f"hello:{name}", by))
{% elif cookiecutter.framework == "django" %}

import django
import redis
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)
django.setup()


def healthz(request):
    return JsonResponse({"status": "ok"})


def worker(request):
    return JsonResponse({"pid": os.getpid()})


# redis-py's pool notices a fork and opens new connections in each worker.
store = redis.Redis.from_url(os.environ["REDIS_URL"])


def incr(request, name):
    by = json.loads(request.body or b"{}").get("by", 1)
    return JsonResponse({"name": name, "value": store.incrby(f"hello:{name}", by)})


urlpatterns = [
    path("healthz", healthz),
    path("api/worker", worker),
    path("api/counters/<str:name>/incr", incr),
]
app = get_wsgi_application()
{% elif cookiecutter.framework == "aiohttp" %}

import redis.asyncio
from aiohttp import web

STORE = web.AppKey("store", redis.asyncio.Redis)


async def healthz(request):
    return web.json_response({"status": "ok"})


async def worker(request):
    return web.json_response({"pid": os.getpid()})


async def incr(request):
    name = request.match_info["name"]
    by = json.loads(await request.read() or b"{}").get("by", 1)
    value = await request.app[STORE].incrby(f"hello:{name}", by)
    return web.json_response({"name": name, "value": value})


async def create_app():
    app = web.Application()
    app[STORE] = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/worker", worker)
    app.router.add_post("/api/counters/{name}/incr", incr)
    return app
{% endif %}
