"""Input validation at the edge: every body and name is checked before any work.

Request bodies are described as JSON Schema and checked with `jsonschema`, so
the rules are data a reader can scan, and every refusal is an `ApiError`
with a machine code and one sentence.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from .errors import ApiError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ApiError(400, "invalid_name", "A name is 1 to 64 characters of A-Z a-z 0-9 _ . -")
    return name


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _int(low: int, high: int) -> dict:
    return {"type": "integer", "minimum": low, "maximum": high}


def _number(low: float, high: float) -> dict:
    return {"type": "number", "minimum": low, "maximum": high}


LABEL = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}

INCREMENT = _object({"by": _int(-1_000_000, 1_000_000)})
LOCKED_INCREMENT = _object({"hold_ms": _int(0, 5000)})
EXPORT = _object({"size_bytes": _int(1, 2_147_483_648), "label": LABEL}, ("size_bytes", "label"))
TASKS = {
    "exit": _object({"task": {"const": "exit"}, "code": _int(0, 255)}, ("task", "code")),
    "echo": _object(
        {"task": {"const": "echo"}, "text": {"type": "string", "maxLength": 1000}},
        ("task", "text"),
    ),
    "sleep": _object(
        {"task": {"const": "sleep"}, "seconds": _number(0, 60), "timeout": _number(0.1, 60)},
        ("task", "seconds", "timeout"),
    ),
}

_VALIDATORS: dict[int, Draft202012Validator] = {}


def parse_json(raw: bytes, *, empty_ok: bool = False) -> Any:
    """Decode a request body; an empty body is `{}` where the endpoint allows it."""
    if not raw.strip():
        if empty_ok:
            return {}
        raise ApiError(400, "invalid_json", "The request needs a JSON body.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None


def validate(document: Any, schema: dict) -> dict:
    """Return the document if it matches the schema, else raise invalid_request."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = Draft202012Validator(schema)
    error = next(iter(validator.iter_errors(document)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "body"
        raise ApiError(400, "invalid_request", f"{where}: {error.message}")
    return document


def task_request(document: Any) -> dict:
    """Pick the named task's schema; a name we don't know is unknown_task."""
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_request", "body: the request must be a JSON object.")
    task = document.get("task")
    if not isinstance(task, str) or task not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise ApiError(400, "unknown_task", f"The task must be one of: {known}.")
    return validate(document, TASKS[task])
