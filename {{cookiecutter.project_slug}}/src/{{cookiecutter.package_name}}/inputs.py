"""Input validation at the edge: every body and name is checked before any work.

A request body is checked against the schema the API's description publishes
for its operation (`openapi.yaml`), so what the service accepts is what the
document says; every refusal is an `InvalidInput` with a machine code and one
sentence. `fastjsonschema` compiles each schema to Python and gives the
verdict; only a refused body is run through `jsonschema`, whose errors say
where and why (fastjsonschema's say less, and jsonschema alone would cost a
small POST about ten times as much as the compiled check).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import fastjsonschema
from jsonschema import Draft202012Validator, ValidationError

from . import openapi
from .errors import InvalidInput

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# How much of a refused value an error message repeats (enough to recognise it),
# and how long the whole message may be.
ECHO_CHARS = 100
MESSAGE_CHARS = 300
JSON = "application/json"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput("invalid_name", "A name is 1 to 64 characters of A-Z a-z 0-9 _ . -")
    return name


def check_idempotency_key(key: str | None) -> str | None:
    """An Idempotency-Key header's value, checked (the same rule as a name); None if absent."""
    if key is not None and not NAME_PATTERN.fullmatch(key):
        raise InvalidInput(
            "invalid_idempotency_key",
            "An Idempotency-Key is 1 to 64 characters of A-Z a-z 0-9 _ . -",
        )
    return key


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


def body(op_id: str, raw: bytes) -> dict[str, Any]:
    """The request body of operation `op_id`, parsed and validated against the
    description's schema for it; empty is `{}` where the body is not required."""
    request = _request(op_id)
    return _checked(request, parse_json(raw, empty_ok=not request.required))


def validate(op_id: str, document: Any) -> dict[str, Any]:
    """`document` if it matches operation `op_id`'s request schema, else invalid_request."""
    return _checked(_request(op_id), document)


class _Schema:
    """One request schema: the compiled check's verdict, jsonschema's sentence.

    The schemas keep to keywords that mean the same in draft 7, fastjsonschema's
    newest, and 2020-12, OpenAPI 3.1's (tests/unit/test_openapi.py holds them to
    it). Defaults are not filled in and formats not checked: jsonschema does
    neither, and the body must be what the client sent.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self._passes = fastjsonschema.compile(schema, use_default=False, use_formats=False)
        self._explains = Draft202012Validator(schema)

    def check(self, document: Any) -> None:
        try:
            self._passes(document)
        except fastjsonschema.JsonSchemaValueException:
            error = next(iter(self._explains.iter_errors(document)), None)
            # None: the two disagree, and jsonschema, the reference, accepts it.
            if error is not None:
                raise InvalidInput("invalid_request", _describe(error)) from None


@dataclass(frozen=True)
class _Request:
    required: bool
    # The body's schema, or None for a discriminated oneOf: then the property that
    # names the branch, and each branch's schema. Checked against the one branch
    # named, a refusal speaks of that branch's fields, where oneOf's would only
    # say "not valid under any of the given schemas".
    schema: _Schema | None
    picked_by: str = ""
    branches: Mapping[str, _Schema] = field(default_factory=dict)

    def schema_for(self, document: Any) -> _Schema:
        if self.schema is not None:
            return self.schema
        if not isinstance(document, dict):
            raise InvalidInput("invalid_request", "body: the request must be a JSON object.")
        value = document.get(self.picked_by)
        branch = self.branches.get(value) if isinstance(value, str) else None
        if branch is None:
            known = ", ".join(sorted(self.branches))
            raise InvalidInput("invalid_request", f"{self.picked_by}: must be one of: {known}.")
        return branch


@functools.cache
def _request(op_id: str) -> _Request:
    """Operation `op_id`'s request body rule, built once (KeyError: no such operation)."""
    request_body = openapi.operation(op_id).get("requestBody")
    if request_body is None:
        raise ValueError(f"operation {op_id} takes no request body.")
    schema = request_body["content"][JSON]["schema"]
    required = bool(request_body.get("required", False))
    discriminator = schema.get("discriminator")
    if discriminator is None:
        return _Request(required, _Schema(schema))
    branches = {
        value: _Schema(openapi.schema(ref)) for value, ref in discriminator["mapping"].items()
    }
    return _Request(required, None, discriminator["propertyName"], branches)


def _checked(request: _Request, document: Any) -> dict[str, Any]:
    request.schema_for(document).check(document)
    # Every request schema is an object's.
    return cast(dict[str, Any], document)


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
