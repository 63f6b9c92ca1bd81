"""The aiohttp application: its factory, its routes and its middlewares.

What a multi-worker service must get right lives in the framework-free toolkit
beside this package (awaited through its async twins, `aio/`); a handler here
reads its request, awaits the toolkit and answers. gunicorn's aiohttp worker
awaits `create_app()` inside each worker's event loop (gunicorn.conf.py).
Everything bound to that loop (the Redis client, the thread pools) is opened
by the cleanup context below, in the worker, and closed there when it stops;
nothing is opened at import or in the gunicorn master.

Nothing on the loop may block: one blocking call stalls every request this
worker holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .. import config, runtime
from ..aio import runtime as aio_runtime
from . import {% if cookiecutter.include_examples %}examples, {% endif %}health, server
from .context import RUNTIME
from .middleware import MAX_BODY_BYTES, counted, json_errors


def _settings() -> config.Settings:
    """The environment's settings, or the worker stops with one sentence (and gunicorn
    with it)."""
    with runtime.config_errors_stop_the_worker():
        return config.load()


async def create_app(settings: config.Settings | None = None) -> web.Application:
    """The app, on `settings` (the environment's unless a test passes its own).

    A setting or directory that cannot be used ends the worker with one sentence
    and gunicorn's boot-error status, instead of a worker answering 500s.
    """
    chosen = settings if settings is not None else _settings()
    server.answer_own_errors_in_json()
    server.settle_before_closing()

    async def open_runtime(app: web.Application) -> AsyncIterator[None]:
        with runtime.config_errors_stop_the_worker():
            async with aio_runtime.opened(chosen) as opened:
                app[RUNTIME] = opened
                yield

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[counted, json_errors])
    app.cleanup_ctx.append(open_runtime)
    # GET routes answer HEAD too. Read from the modules here, at each call, so a
    # test may swap a route table's handler before the app is built.
    app.add_routes(health.routes)
{% if cookiecutter.include_examples %}
    app.add_routes(examples.routes)
{% endif %}
    return app
