"""What a handler hands back, and the one table that maps toolkit errors to HTTP.

Handlers of every framework return a `Reply` (a status, a JSON body or none,
headers, or a file to send); each adapter has one function that turns it into
its framework's response. Error codes for statuses are the same ones nginx's
own error pages use (deploy/nginx/app.conf.template), so a 413 reads the same
whoever refused the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Reply:
    status: int
    # JSON-serialisable; None means an empty body (e.g. an X-Accel-Redirect answer).
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Only for direct delivery (no nginx in front): the framework sends this file.
    file: Path | None = None
    # A body that is not JSON (the metrics' text format), sent as it is, with the
    # Content-Type in `headers`; `body` is None then.
    raw: bytes | None = None


@dataclass(frozen=True)
class Call:
    """A request as handlers see it: path parameters, raw body, headers (lowercase names).

    `peer` is the address the connection came from (REMOTE_ADDR; empty over a unix
    socket). Who the client is, the peer or whom a trusted proxy names, is decided by
    `ratelimit.client_of`, which knows the proxies the service trusts.
    """

    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    peer: str = ""

    @classmethod
    def of(
        cls,
        params: Mapping[str, str],
        body: bytes,
        headers: Iterable[tuple[str, str]],
        peer: str | None = "",
    ) -> Call:
        """From a framework's request parts; header names are kept lowercase."""
        return cls(params, body, {name.lower(): value for name, value in headers}, peer or "")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


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


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, body, dict(headers or {}))


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_reply(exc: ServiceError) -> Reply:
    """The answer for a toolkit error, from the one table above."""
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            status, code = ERRORS[cls]
            break
    else:
        status, code = 500, "internal_error"
    code = getattr(exc, "code", code)
    if isinstance(exc, BackendUnavailable):
        # Counted here, where every adapter turns the error into its 503.
        metrics.backend_unavailable(exc.reason)
    return json_reply(status, error_body(code, str(exc)), exc.headers)


def status_reply(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A framework's own refusal (404, 405, 413...), in the same shape and codes."""
    code = STATUS_CODES.get(status, "error" if status < 500 else "internal_error")
    return json_reply(status, error_body(code, message), headers)


def text_reply(status: int, content: bytes, content_type: str) -> Reply:
    """A body sent as it is (not JSON), e.g. the metrics' text format."""
    return Reply(status, None, {"Content-Type": content_type}, raw=content)


def internal_error_reply() -> Reply:
    return status_reply(500, "The server failed; the error was logged.")


def download_reply(
    *, filename: str, content_type: str, accel_path: str, file: Path | None
) -> Reply:
    """An attachment: handed to nginx by X-Accel-Redirect (the worker sends no
    bytes), or, in direct delivery (`file` set, no nginx), sent by the framework."""
    headers = {
        "Content-Type": content_type,
        # Names come from validated labels (A-Z a-z 0-9 _ . -): nothing to escape.
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if file is not None:
        return Reply(200, None, headers, file)
    return Reply(200, None, {"X-Accel-Redirect": accel_path, **headers})
