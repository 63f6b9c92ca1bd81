"""The one table from toolkit errors to HTTP: a status, a machine code, and headers.

Every framework's error handling reads it, so the same failure answers the same
way whichever framework serves it. Codes for bare statuses are the ones nginx's
own error pages use (deploy/nginx/app.conf.template): a 413 reads the same
whoever refused the request.
"""

from __future__ import annotations

from . import metrics
from .errors import (
    BackendUnavailable,
    Busy,
    ConfigError,
    IdempotencyKeyReused,
    InsufficientStorage,
    InvalidInput,
    LockLost,
    LockTimeout,
    NotFound,
    RateLimited,
    ServiceError,
    StoreFull,
)

# The code for a status when nothing more specific applies; nginx uses the same.
STATUS_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    412: "precondition_failed",
    413: "request_too_large",
    414: "uri_too_long",
    416: "range_not_satisfiable",
    422: "unprocessable",
    429: "rate_limited",
    431: "request_header_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "upstream_unavailable",
    503: "busy",
    504: "upstream_timeout",
    505: "http_version_not_supported",
}

# Toolkit error -> (status, code). InvalidInput carries its own code.
ERRORS: dict[type[ServiceError], tuple[int, str]] = {
    InvalidInput: (400, "invalid_request"),
    NotFound: (404, "not_found"),
    LockTimeout: (409, "lock_timeout"),
    LockLost: (409, "lock_lost"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    RateLimited: (429, "rate_limited"),
    BackendUnavailable: (503, "backend_unavailable"),
    Busy: (503, "busy"),
    InsufficientStorage: (507, "insufficient_storage"),
    StoreFull: (507, "insufficient_storage"),
    ConfigError: (500, "configuration_error"),
}

# Errors that say when to come back: their answer carries Retry-After.
RETRY_AFTER: tuple[type[RateLimited | Busy], ...] = (RateLimited, Busy)

ErrorBody = dict[str, dict[str, str]]
Answer = tuple[int, ErrorBody, dict[str, str]]


def error_body(code: str, message: str) -> ErrorBody:
    return {"error": {"code": code, "message": message}}


def answer(exc: ServiceError) -> Answer:
    """The status, JSON body and headers that answer a toolkit error."""
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            status, code = ERRORS[cls]
            break
    else:
        status, code = 500, "internal_error"
    if isinstance(exc, InvalidInput):
        code = exc.code
    headers = {}
    if isinstance(exc, RETRY_AFTER):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, BackendUnavailable):
        # Counted here, where every framework turns the error into its 503.
        metrics.backend_unavailable(exc.reason)
    return status, error_body(code, str(exc)), headers


def refusal(status: int, message: str) -> ErrorBody:
    """The body of a framework's own refusal (404, 405, 413...), in the same shape and codes."""
    code = STATUS_CODES.get(status, "error" if status < 500 else "internal_error")
    return error_body(code, message)


INTERNAL_ERROR_MESSAGE = "The server failed; the error was logged."
