"""The API's description, OpenAPI 3.1, read from `openapi.yaml` beside this file.

The document is written first and the service follows it: `inputs` validates
each request body with the schema published here for its operation, the
contract tests hold the app's routes equal to the document's operations, and
the integration suite fuzzes the service from it. The example endpoints'
part, `examples/openapi.yaml`, is merged in when the project has them.

This module only reads the files: it imports nothing of the service.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
# The toolkit's document, then the parts merged into it where they exist.
SOURCE = HERE / "openapi.yaml"
PARTS = (HERE / "examples" / "openapi.yaml",)
TITLE = "{{ cookiecutter.project_name }}"
SUMMARY = "{{ cookiecutter.description }}"
DISTRIBUTION = "{{ cookiecutter.project_slug }}"
# The keys of a path item that are operations (the others are shared fields).
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# libyaml's loader where PyYAML was built with it (its wheels are): ten times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Document = dict[str, Any]


def _read(path: Path) -> Document:
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 (a safe loader)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a mapping.")
    return loaded


def merged(base: Document, part: Document) -> Document:
    """`base` with `part`'s paths and components added; a name in both is an error."""
    document = copy.deepcopy(base)
    sections = [("paths", document.setdefault("paths", {}), part.get("paths", {}))]
    components = document.setdefault("components", {})
    for name, entries in part.get("components", {}).items():
        sections.append((f"components/{name}", components.setdefault(name, {}), entries))
    for where, into, entries in sections:
        for key, value in entries.items():
            if key in into:
                raise ValueError(f"{where}/{key} is described twice.")
            into[key] = value
    return document


@functools.cache
def document() -> Document:
    """The whole description, read once per process (treat it as read-only)."""
    described = _read(SOURCE)
    for part in PARTS:
        if part.is_file():
            described = merged(described, _read(part))
    described["info"] = {
        **described.get("info", {}),
        "title": TITLE,
        "summary": SUMMARY,
        "version": _version(),
    }
    return described


@functools.cache
def document_bytes() -> bytes:
    """The description as JSON, encoded once: what GET /api/openapi.json sends."""
    return json.dumps(document(), separators=(",", ":")).encode()


def schema(ref: str) -> Any:
    """What a local reference ("#/components/schemas/Name") names, its own $refs inlined."""
    return _inlined(_target(ref))


@functools.cache
def _operations() -> dict[str, Document]:
    found: dict[str, Document] = {}
    for item in document()["paths"].values():
        for method in METHODS:
            if method in item:
                found[item[method]["operationId"]] = _inlined(item[method])
    return found


def operation(op_id: str) -> Document:
    """One operation object, by operationId, with every $ref inlined (KeyError if none)."""
    return _operations()[op_id]


def operation_ids() -> list[str]:
    return list(_operations())


def _inlined(node: Any) -> Any:
    """A copy of `node` with each {"$ref": "#/..."} replaced by what it names.

    Written out rather than asking jsonschema's resolver: that one resolves while
    validating, and the validators here (and readers, and tests) want the schema
    whole. The description's references are local and never circular.
    """
    if isinstance(node, dict):
        if "$ref" in node:
            return _inlined(_target(node["$ref"]))
        return {key: _inlined(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(value) for value in node]
    return node


def _target(ref: str) -> Any:
    # A JSON Pointer (RFC 6901) into this document: "~1" is "/", "~0" is "~".
    if not ref.startswith("#/"):
        raise ValueError(f"{ref!r}: only references into this document are supported.")
    node: Any = document()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "0.0.0"
