"""Input validation at the edge: every body and name is checked before any work.

Request bodies are described as JSON Schema and checked with `jsonschema`, so
the rules are data a reader can scan, and every refusal is an `InvalidInput`
with a machine code and one sentence.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from .errors import InvalidInput

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# How much of a refused value an error message repeats (enough to recognise it),
# and how long the whole message may be.
ECHO_CHARS = 100
MESSAGE_CHARS = 300


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput("invalid_name", "A name is 1 to 64 characters of A-Z a-z 0-9 _ . -")
    return name


def object_schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def integer(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def number(low: float, high: float) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high}


_VALIDATORS: dict[int, Draft202012Validator] = {}


def parse_json(raw: bytes, *, empty_ok: bool = False) -> Any:
    """Decode a request body; an empty body is `{}` where the endpoint allows it."""
    if not raw.strip():
        if empty_ok:
            return {}
        raise InvalidInput("invalid_json", "The request needs a JSON body.")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid_json", "The request body is not valid JSON.") from None
    except RecursionError:
        raise InvalidInput("invalid_json", "The request body is nested too deeply.") from None


def _refuse_constant(name: str) -> None:
    # Python's json accepts NaN, Infinity and -Infinity, which JSON does not.
    raise ValueError(f"{name} is not a JSON number")


def validate(document: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Return the document if it matches the schema, else raise invalid_request."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = Draft202012Validator(schema)
    error = next(iter(validator.iter_errors(document)), None)
    if error is not None:
        raise InvalidInput("invalid_request", _describe(error))
    if not isinstance(document, dict):
        raise TypeError("validate() takes an object's schema (object_schema)")
    return document


def _describe(error: ValidationError) -> str:
    """jsonschema's message, with the refused value cut short: the message embeds
    the value's repr whole, and a 1 MB label came back in a 1 MB error."""
    where = "/".join(str(part) for part in error.absolute_path) or "body"
    shown = repr(error.instance)
    message = error.message.replace(shown, _shorten(shown, ECHO_CHARS))
    # Values quoted in other ways (a long property name, say) are cut with the rest.
    return _shorten(f"{where}: {message}", MESSAGE_CHARS)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
