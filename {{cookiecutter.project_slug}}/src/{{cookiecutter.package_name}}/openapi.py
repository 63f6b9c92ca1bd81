"""The API's description, OpenAPI 3.1, built from the route table and the very
schemas that validate requests, so the description cannot drift from the service.

Each route carries an `Operation`: its request body schema (the dict its handler
validates with), its parameters, its success answer, and the errors it can give
as toolkit error classes, whose statuses and codes come from the one table in
`replies`. `GET /api/openapi.json` answers the document; a fuzzer (the
integration suite runs schemathesis) checks every answer against it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from .errors import Busy, InvalidInput, RateLimited, ServiceError
from .exports import ID_PATTERN
from .replies import ERRORS, STATUS_CODES, Call, Reply, json_reply
from .schemas import NAME_PATTERN, object_schema

if TYPE_CHECKING:
    from .routes import Route

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
TITLE = "{{ cookiecutter.project_name }}"
SUMMARY = "{{ cookiecutter.description }}"
DISTRIBUTION = "{{ cookiecutter.project_slug }}"


def exact(pattern: str) -> dict[str, Any]:
    """A string schema for a rule the toolkit checks with `re.fullmatch`.

    JSON Schema searches, so the pattern is anchored. `(?!\\n)` because Python's
    `$` also matches before a final newline (a Python validator would let "a\\n"
    pass); in ECMA-262, OpenAPI's dialect, the lookahead is simply always true.
    """
    return {"type": "string", "pattern": f"^(?:{pattern})(?!\\n)$"}


# Path parameters, from the patterns the toolkit checks them with.
NAME = exact(NAME_PATTERN.pattern)
EXPORT_ID = exact(ID_PATTERN.pattern)


@dataclass(frozen=True)
class Operation:
    """What the description says of one route.

    `request` is the schema object the handler validates the body with (not a
    copy); `errors` are the toolkit errors the handler can raise (status and
    code from `replies.ERRORS`) and `invalid` the `InvalidInput` codes it can
    answer. 404 for a path that cannot route and 413 for an oversize body are
    added for every route that has path parameters or a body.
    """

    summary: str
    # The success answer: status, and body schema per media type.
    status: int = 200
    response: dict[str, Any] | None = None
    media_types: tuple[str, ...] = (JSON,)
    response_headers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # The request: a JSON body, path parameters and request headers.
    request: dict[str, Any] | None = None
    body_required: bool = True
    params: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    headers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # What else it answers.
    invalid: tuple[str, ...] = ()
    errors: tuple[type[ServiceError], ...] = ()
    # Answers with a body of their own (/readyz's 503): status -> (description, schema).
    other: Mapping[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # OpenAPI link objects by name, for clients (and a stateful fuzzer) to follow.
    links: Mapping[str, dict[str, Any]] = field(default_factory=dict)


# Headers some errors carry: the client needs them to act on the answer.
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending another such request.",
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
    }
}
ERROR_HEADERS: dict[type[ServiceError], dict[str, dict[str, Any]]] = {
    RateLimited: RETRY_AFTER,
    Busy: RETRY_AFTER,
}
# nginx (and the framework, for direct connections) refuse these before a handler runs.
UNROUTABLE = 404
TOO_LARGE = 413

# The toolkit's own routes: health and this description.
STATUS_OK = object_schema({"status": {"const": "ok"}}, ("status",))
READY = object_schema(
    {"status": {"const": "ok"}, "checks": object_schema({"state": {"const": "ok"}}, ("state",))},
    ("status", "checks"),
)
NOT_READY = object_schema(
    {
        "status": {"const": "unavailable"},
        "checks": object_schema({"state": {"type": "string"}}, ("state",)),
    },
    ("status", "checks"),
)
DOCUMENT = {
    "type": "object",
    "properties": {
        "openapi": {"type": "string"},
        "info": {"type": "object"},
        "paths": {"type": "object"},
    },
    "required": ["openapi", "info", "paths"],
}

HEALTHZ = Operation("The process is up; touches no backend.", response=STATUS_OK)
READYZ = Operation(
    "The shared-state backend answers (200) or not (503, with the reason).",
    response=READY,
    other={503: ("Not ready: `checks.state` says why.", NOT_READY)},
)
OPENAPI = Operation("This description of the API, OpenAPI 3.1.", response=DOCUMENT)


def error_schema(codes: Iterable[str]) -> dict[str, Any]:
    """The one error shape, with the codes this answer can carry."""
    error = object_schema(
        {"code": {"enum": sorted(set(codes))}, "message": {"type": "string", "minLength": 1}},
        ("code", "message"),
    )
    return object_schema({"error": error}, ("error",))


# nginx answers 403 to an address METRICS_ALLOW_FROM does not name (the JSON error
# shape, code forbidden); any other, the application answers the text format.
METRICS = Operation(
    "The whole service's metrics, every worker's added up, in the Prometheus text format.",
    media_types=("text/plain",),
    other={403: ("Not from an address allowed to scrape.", error_schema([STATUS_CODES[403]]))},
)


def error_statuses(operation: Operation, path_params: bool) -> dict[int, set[str]]:
    """Status -> the codes the operation can answer with it."""
    by_status: dict[int, set[str]] = {}
    invalid_status = ERRORS[InvalidInput][0]
    for code in operation.invalid:
        by_status.setdefault(invalid_status, set()).add(code)
    for error in operation.errors:
        status, code = ERRORS[error]
        by_status.setdefault(status, set()).add(code)
    if path_params:
        by_status.setdefault(UNROUTABLE, set()).add(STATUS_CODES[UNROUTABLE])
    if operation.request is not None:
        by_status.setdefault(TOO_LARGE, set()).add(STATUS_CODES[TOO_LARGE])
    return by_status


def _headers_of(status: int, operation: Operation) -> dict[str, dict[str, Any]]:
    """The headers of the operation's errors with this status; required where every
    one of them sends it (a 503 busy has Retry-After, a 503 backend_unavailable not)."""
    errors = [error for error in operation.errors if ERRORS[error][0] == status]
    headers: dict[str, dict[str, Any]] = {}
    for error in errors:
        for name, header in ERROR_HEADERS.get(error, {}).items():
            required = all(name in ERROR_HEADERS.get(other, {}) for other in errors)
            headers[name] = {**header, "required": required}
    return headers


def _responses(operation: Operation, path_params: bool) -> dict[str, dict[str, Any]]:
    success: dict[str, Any] = {
        "description": operation.summary,
        "content": {
            media: {"schema": operation.response} if operation.response is not None else {}
            for media in operation.media_types
        },
    }
    if operation.response_headers:
        success["headers"] = dict(operation.response_headers)
    if operation.links:
        success["links"] = dict(operation.links)
    responses = {str(operation.status): success}
    for status, (description, schema) in operation.other.items():
        responses[str(status)] = {"description": description, "content": {JSON: {"schema": schema}}}
    for status, codes in sorted(error_statuses(operation, path_params).items()):
        answer: dict[str, Any] = {
            "description": "An error: " + ", ".join(sorted(codes)) + ".",
            "content": {JSON: {"schema": error_schema(codes)}},
        }
        headers = _headers_of(status, operation)
        if headers:
            answer["headers"] = headers
        responses[str(status)] = answer
    return responses


def describe_route(route: Route) -> dict[str, Any]:
    """One route's OpenAPI operation object."""
    operation = route.operation
    if operation is None:
        raise ValueError(f"{route.method} {route.path} has no description (Route.operation).")
    names = route.params()
    if set(names) != set(operation.params):
        raise ValueError(f"{route.method} {route.path}: path parameters and description differ.")
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": operation.params[name]}
        for name in names
    ]
    parameters += [
        {"name": name, "in": "header", "required": False, "schema": schema}
        for name, schema in operation.headers.items()
    ]
    described: dict[str, Any] = {
        "operationId": route.name,
        "summary": operation.summary,
        "responses": _responses(operation, bool(names)),
    }
    if parameters:
        described["parameters"] = parameters
    if operation.request is not None:
        described["requestBody"] = {
            "required": operation.body_required,
            "content": {JSON: {"schema": operation.request}},
        }
    return described


def describe(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = describe_route(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "summary": SUMMARY, "version": _version()},
        "paths": paths,
    }


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "0.0.0"


@functools.cache
def document() -> dict[str, Any]:
    """This service's description, built once per process (the routes never change)."""
    # Imported here: routes.py imports this module for the handler below.
    from .routes import ROUTES

    return describe(ROUTES)


def openapi(call: Call) -> Reply:
    return json_reply(200, document())
