"""The framework's hello world, the floor the service's own overhead is measured from.

gunicorn loads it (APP_MODULE=hello:{{ 'create_app' if cookiecutter.framework == 'aiohttp' else 'app' }}) with the project's gunicorn.conf.py, behind
the same nginx: only the application differs. It answers /healthz, which the
stack waits for, and /api/worker with the worker's pid, as the service does.
"""

import os
{% if cookiecutter.framework == "flask" %}

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.get("/api/worker")
def worker():
    return jsonify(pid=os.getpid())
{% elif cookiecutter.framework == "django" %}

import django
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


urlpatterns = [path("healthz", healthz), path("api/worker", worker)]
app = get_wsgi_application()
{% elif cookiecutter.framework == "aiohttp" %}

from aiohttp import web


async def healthz(request):
    return web.json_response({"status": "ok"})


async def worker(request):
    return web.json_response({"pid": os.getpid()})


async def create_app():
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/worker", worker)
    return app
{% endif %}
