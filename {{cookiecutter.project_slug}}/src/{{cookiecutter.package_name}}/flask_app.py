"""The Flask adapter: the route table mounted in Flask, and one way to answer.

Everything a multi-worker service must get right lives in the framework-free
modules beside this one; a view here only hands the path parameters, body
and headers to a handler and turns its `Reply` into a Flask response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from flask import Flask, Response, request, send_file
from werkzeug.exceptions import HTTPException

from . import metrics, routes, runtime
from .errors import ServiceError
from .replies import Call, Reply, error_reply, internal_error_reply, status_reply
from .routes import Route

# nginx refuses larger bodies with 413 first; this guards direct connections.
MAX_BODY_BYTES = 1 << 20

log = logging.getLogger(__name__)


def to_response(reply: Reply) -> Response:
    """The one place a `Reply` becomes a Flask response."""
    if reply.file is not None:
        response = send_file(reply.file, mimetype=reply.headers.get("Content-Type"))
        response.status_code = reply.status
    elif reply.raw is not None:
        return Response(reply.raw, status=reply.status, headers=reply.headers)
    elif reply.body is None:
        response = Response(b"", status=reply.status)
        # An empty body has no type (Response would say text/html); a download
        # sets its file's type below.
        del response.headers["Content-Type"]
    else:
        # Type and headers given to the constructor: setting them afterwards parses
        # and rebuilds the header list once more.
        return Response(
            json.dumps(reply.body),
            status=reply.status,
            headers=reply.headers,
            mimetype="application/json",
        )
    response.headers.update(reply.headers)
    return response


def _view(route: Route) -> Callable[..., Response]:
    def view(**params: str) -> Response:
        call = Call.of(params, request.get_data(), request.headers.items(), request.remote_addr)
        return to_response(route.handler(call))

    view.__name__ = route.name
    return view


def _flask_path(path: str) -> str:
    return routes.PARAM.sub(r"<\1>", path)


class _Flask(Flask):
    """Flask whose automatic OPTIONS answer is 204 with Allow and no body, as in
    every adapter; Flask's own is 200 with an empty text/html body."""

    def make_default_options_response(self) -> Response:
        allowed = super().make_default_options_response().allow
        return to_response(Reply(204, None, {"Allow": ", ".join(sorted(allowed))}))


def create_app() -> Flask:
    runtime.boot()
    # No static route: nginx serves static/, and every route is one the description has.
    app = _Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # "/api/counters//incr" is a missing name (404), not a redirect to another URL.
    app.url_map.merge_slashes = False
    # Every request counted and timed by route pattern, 404s and errors included.
    # Flask's documented way to add WSGI middleware; mypy refuses any assignment to a method.
    app.wsgi_app = metrics.InstrumentedWSGI(  # type: ignore[method-assign]
        app.wsgi_app, [r.path for r in routes.ROUTES]
    )
    for route in routes.ROUTES:
        app.add_url_rule(
            _flask_path(route.path),
            endpoint=f"{route.method} {route.path}",
            view_func=_view(route),
            methods=[route.method],
        )

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> Response:
        return to_response(error_reply(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return to_response(status_reply(exc.code or 500, exc.description or exc.name, headers))

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return to_response(internal_error_reply())

    return app


app = create_app()
