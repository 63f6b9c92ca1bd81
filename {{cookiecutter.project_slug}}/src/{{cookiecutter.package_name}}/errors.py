"""The one error shape every endpoint answers with, whatever the framework.

Handlers raise `ApiError`; each framework adapter turns it into
`{"error": {"code": ..., "message": ...}}` with its status, so no bad input
ever reaches a traceback page.
"""

from __future__ import annotations


class ApiError(Exception):
    """An answer for the client: an HTTP status, a machine code and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


class BackendUnavailable(ApiError):
    """The shared-state backend did not answer; the request changed nothing we know of."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            503, "backend_unavailable", f"The shared-state backend is unavailable: {reason}"
        )
        self.reason = reason


class LockTimeout(ApiError):
    def __init__(self, name: str, waited: float) -> None:
        super().__init__(
            409, "lock_timeout", f"Lock {name!r} stayed busy for {waited:g} s; nothing was written."
        )


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")
