"""The example endpoints' request bodies, as JSON Schema, and what the API's
description says of each endpoint: the handlers validate with these very
dicts, and `openapi.py` publishes them, so the two cannot disagree."""

from __future__ import annotations

from typing import Any

from ..errors import (
    BackendUnavailable,
    Busy,
    IdempotencyKeyReused,
    InsufficientStorage,
    InvalidInput,
    LockLost,
    LockTimeout,
    NotFound,
    RateLimited,
    StoreFull,
)
from ..exports import ID_PATTERN
from ..openapi import EXPORT_ID, NAME, Operation, exact
from ..schemas import NAME_PATTERN, integer, number, object_schema, validate

# `(?!\n)` because Python's `$` also matches before a final newline ("a\n" would pass);
# in ECMA-262 regexes (OpenAPI's dialect) the lookahead is simply always true.
LABEL = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}(?!\n)$"}

INCREMENT = object_schema({"by": integer(-1_000_000, 1_000_000)})
LOCKED_INCREMENT = object_schema({"hold_ms": integer(0, 5000)})
EXPORT = object_schema(
    {"size_bytes": integer(1, 2_147_483_648), "label": LABEL}, ("size_bytes", "label")
)
# No argv entry can carry a NUL character: refused with the rest of the shape.
ECHO_TEXT = {"type": "string", "maxLength": 1000, "pattern": r"^[^\x00]*$"}
TASKS = {
    "exit": object_schema({"task": {"const": "exit"}, "code": integer(0, 255)}, ("task", "code")),
    "echo": object_schema({"task": {"const": "echo"}, "text": ECHO_TEXT}, ("task", "text")),
    "sleep": object_schema(
        {"task": {"const": "sleep"}, "seconds": number(0, 60), "timeout": number(0.1, 60)},
        ("task", "seconds", "timeout"),
    ),
}


def task_request(document: Any) -> dict[str, Any]:
    """Pick the named task's schema; a name we don't know is unknown_task."""
    if not isinstance(document, dict):
        raise InvalidInput("invalid_request", "body: the request must be a JSON object.")
    task = document.get("task")
    if not isinstance(task, str) or task not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise InvalidInput("unknown_task", f"The task must be one of: {known}.")
    return validate(document, TASKS[task])


# What the description says of each request body as a whole: one of the tasks.
TASK = {"oneOf": list(TASKS.values())}
# The Idempotency-Key header: the same rule as a name.
IDEMPOTENCY_KEY = exact(NAME_PATTERN.pattern)

# The answers.
COUNTER = object_schema({"name": NAME, "value": {"type": "integer"}}, ("name", "value"))
LOCKED_COUNTER = object_schema(
    {"name": NAME, "value": {"type": "integer"}, "fencing_token": {"type": "integer"}},
    ("name", "value", "fencing_token"),
)
WORKER = object_schema(
    {
        "pid": {"type": "integer", "minimum": 1},
        "host": {"type": "string"},
        "worker_class": {"type": "string"},
        "framework": {"type": "string"},
    },
    ("pid", "host", "worker_class", "framework"),
)
EXPORT_META = object_schema(
    {
        "id": EXPORT_ID,
        "label": LABEL,
        "size": {"type": "integer", "minimum": 0},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "download_url": {
            "type": "string",
            "pattern": f"^/api/exports/{ID_PATTERN.pattern}/download$",
        },
    },
    ("id", "label", "size", "sha256", "download_url"),
)
TASK_RESULT = object_schema(
    {
        "task": {"enum": sorted(TASKS)},
        # Negative when a signal ended the child (a timeout's kill).
        "returncode": {"type": "integer"},
        "timed_out": {"type": "boolean"},
        "stdout": {"type": "string"},
        "duration_ms": {"type": "integer", "minimum": 0},
    },
    ("task", "returncode", "timed_out", "stdout", "duration_ms"),
)
ATTACHMENT = {
    "description": "The file's name, for saving it.",
    "required": True,
    "schema": {"type": "string", "pattern": '^attachment; filename="[A-Za-z0-9_.-]+"$'},
}

BODY_CODES = ("invalid_json", "invalid_request")

# The description of each example route, by handler name (routes.py pairs them).
OPERATIONS: dict[str, Operation] = {
    "worker": Operation("Which worker process (and host) answered.", response=WORKER),
    "incr_counter": Operation(
        "Add `by` (default 1) to a shared counter. An Idempotency-Key makes retries safe.",
        response=COUNTER,
        request=INCREMENT,
        body_required=False,
        params={"name": NAME},
        headers={"Idempotency-Key": IDEMPOTENCY_KEY},
        invalid=(*BODY_CODES, "invalid_name", "invalid_idempotency_key"),
        errors=(IdempotencyKeyReused, BackendUnavailable, StoreFull),
        links={
            "read": {"operationId": "get_counter", "parameters": {"name": "$response.body#/name"}}
        },
    ),
    "get_counter": Operation(
        "A shared counter's value (0 if it was never incremented).",
        response=COUNTER,
        params={"name": NAME},
        invalid=("invalid_name",),
        errors=(BackendUnavailable,),
    ),
    "locked_increment": Operation(
        "Read, wait `hold_ms`, write plus one, inside a lock shared by every worker.",
        response=LOCKED_COUNTER,
        request=LOCKED_INCREMENT,
        body_required=False,
        params={"name": NAME},
        invalid=(*BODY_CODES, "invalid_name"),
        errors=(LockTimeout, LockLost, RateLimited, BackendUnavailable, StoreFull),
    ),
    "create_export": Operation(
        "Write a file of `size_bytes` bytes, published atomically; nginx serves it.",
        status=201,
        response=EXPORT_META,
        request=EXPORT,
        invalid=BODY_CODES,
        # LockTimeout: the wait for the store's space ledger, shared by every worker.
        errors=(RateLimited, InsufficientStorage, LockTimeout),
        links={
            "read": {
                "operationId": "get_export",
                "parameters": {"export_id": "$response.body#/id"},
            },
            "download": {
                "operationId": "download_export",
                "parameters": {"export_id": "$response.body#/id"},
            },
        },
    ),
    "get_export": Operation(
        "An export's metadata.",
        response=EXPORT_META,
        params={"export_id": EXPORT_ID},
        errors=(NotFound,),
    ),
    "download_export": Operation(
        "An export's bytes, as an attachment, sent by nginx.",
        media_types=("text/plain", "application/octet-stream"),
        response_headers={"Content-Disposition": ATTACHMENT},
        params={"export_id": EXPORT_ID},
        errors=(NotFound,),
    ),
    "run_task": Operation(
        "Run one named task as a child process, with a timeout, and report how it ended.",
        response=TASK_RESULT,
        request=TASK,
        invalid=(*BODY_CODES, "unknown_task"),
        errors=(RateLimited, Busy),
    ),
}
