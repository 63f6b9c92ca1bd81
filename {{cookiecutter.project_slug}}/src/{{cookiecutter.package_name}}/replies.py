"""What a handler hands back.

Handlers of every framework return a `Reply` (a status, a JSON body or none,
headers, or a file to send); each adapter has one function that turns it into
its framework's response. Error answers come from `http_errors`' one table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import http_errors
from .errors import ServiceError

# The table's names, for the modules that still read them here.
ERRORS = http_errors.ERRORS
STATUS_CODES = http_errors.STATUS_CODES
error_body = http_errors.error_body


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


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, body, dict(headers or {}))


def error_reply(exc: ServiceError) -> Reply:
    """The answer for a toolkit error, from the one table (`http_errors`)."""
    return json_reply(*http_errors.answer(exc))


def status_reply(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A framework's own refusal (404, 405, 413...), in the same shape and codes."""
    return json_reply(status, http_errors.refusal(status, message), headers)


def text_reply(status: int, content: bytes, content_type: str) -> Reply:
    """A body sent as it is (not JSON), e.g. the metrics' text format."""
    return Reply(status, None, {"Content-Type": content_type}, raw=content)


def internal_error_reply() -> Reply:
    return status_reply(500, http_errors.INTERNAL_ERROR_MESSAGE)


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
