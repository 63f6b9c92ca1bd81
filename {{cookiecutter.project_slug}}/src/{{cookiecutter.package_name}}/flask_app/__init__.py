"""The Flask application: its factory, its blueprints and its error handlers.

What a multi-worker service must get right lives in the framework-free toolkit
beside this package; a view here reads its request, calls the toolkit and
answers. gunicorn calls `create_app()` in each worker (gunicorn.conf.py), so
nothing is opened in the master and every worker has its own connections.
"""

from __future__ import annotations

from flask import Flask, Response

from .. import config, metrics, runtime
from . import errors, health
from .context import RUNTIME
{% if cookiecutter.include_examples %}
from .examples import bp as example_endpoints
{% endif %}

# nginx refuses larger bodies with 413 first; this guards direct connections.
MAX_BODY_BYTES = 1 << 20


class App(Flask):
    """Flask whose automatic OPTIONS answer is 204 with Allow and no body, as the
    other frameworks answer it; Flask's own is 200 with an empty text/html body."""

    def make_default_options_response(self) -> Response:
        allowed = super().make_default_options_response().allow
        response = Response(status=204, headers={"Allow": ", ".join(sorted(allowed))})
        del response.headers["Content-Type"]
        return response


def create_app(settings: config.Settings | None = None) -> Flask:
    """The app, on `settings` (the environment's unless a test passes its own).

    A setting or directory that cannot be used ends the worker with one sentence
    and gunicorn's boot-error status, instead of a worker answering 500s.
    """
    with runtime.config_errors_stop_the_worker():
        opened = runtime.open_runtime(settings or config.load())
    app = App(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # "/api/counters//incr" is a missing name (404), not a redirect to another URL.
    app.url_map.merge_slashes = False
    app.extensions[RUNTIME] = opened
    errors.register(app)
    app.register_blueprint(health.bp)
{% if cookiecutter.include_examples %}
    app.register_blueprint(example_endpoints)
{% endif %}
    # Every request counted and timed by its route's pattern, 404s and errors included.
    patterns = [metrics.route_label(rule.rule) for rule in app.url_map.iter_rules()]
    # Flask's documented way to add WSGI middleware; mypy refuses any assignment to a method.
    app.wsgi_app = metrics.InstrumentedWSGI(app.wsgi_app, patterns)  # type: ignore[method-assign]
    return app
