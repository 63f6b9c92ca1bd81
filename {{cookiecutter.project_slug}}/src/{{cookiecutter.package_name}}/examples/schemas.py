"""The example endpoints' request bodies, as JSON Schema."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from ..schemas import integer, number, object_schema, validate

# `(?!\n)` because Python's `$` also matches before a final newline ("a\n" would pass);
# in ECMA-262 regexes (OpenAPI's dialect) the lookahead is simply always true.
LABEL = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}(?!\n)$"}

INCREMENT = object_schema({"by": integer(-1_000_000, 1_000_000)})
LOCKED_INCREMENT = object_schema({"hold_ms": integer(0, 5000)})
EXPORT = object_schema(
    {"size_bytes": integer(1, 2_147_483_648), "label": LABEL}, ("size_bytes", "label")
)
TASKS = {
    "exit": object_schema({"task": {"const": "exit"}, "code": integer(0, 255)}, ("task", "code")),
    "echo": object_schema(
        {"task": {"const": "echo"}, "text": {"type": "string", "maxLength": 1000}},
        ("task", "text"),
    ),
    "sleep": object_schema(
        {"task": {"const": "sleep"}, "seconds": number(0, 60), "timeout": number(0.1, 60)},
        ("task", "seconds", "timeout"),
    ),
}


def task_request(document: Any) -> dict:
    """Pick the named task's schema; a name we don't know is unknown_task."""
    if not isinstance(document, dict):
        raise InvalidInput("invalid_request", "body: the request must be a JSON object.")
    task = document.get("task")
    if not isinstance(task, str) or task not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise InvalidInput("unknown_task", f"The task must be one of: {known}.")
    return validate(document, TASKS[task])
