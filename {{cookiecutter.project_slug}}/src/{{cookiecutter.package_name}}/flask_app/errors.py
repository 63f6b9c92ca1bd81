"""Every error answers in the service's one JSON shape, from `http_errors`' table."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .. import http_errors
from ..errors import ServiceError

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    app.register_error_handler(ServiceError, toolkit_error)
    app.register_error_handler(HTTPException, refused)
    app.register_error_handler(Exception, unexpected)


def toolkit_error(exc: ServiceError) -> tuple[Response, int, dict[str, str]]:
    status, body, headers = http_errors.answer(exc)
    return jsonify(body), status, headers


def refused(exc: HTTPException) -> tuple[Response, int, dict[str, str]]:
    """Flask's own refusals (404, 405, 413...); a 405 keeps its Allow."""
    status = exc.code or 500
    headers = {name: value for name, value in exc.get_headers() if name.lower() == "allow"}
    return jsonify(http_errors.refusal(status, exc.description or exc.name)), status, headers


def unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("unhandled error in %s %s", request.method, request.path)
    return jsonify(http_errors.refusal(500, http_errors.INTERNAL_ERROR_MESSAGE)), 500
