"""The naive implementations the integration proofs must catch.

Loaded by gunicorn instead of the real app (APP_MODULE=naive_app:app) with
NAIVE_VARIANT naming one mistake teams really make:

  local_counter  counters in a module-level dict, one per worker process
  no_lock        the locked read-modify-write without any lock
  fixed_path     every export written to one fixed path, then moved

NAIVE_PACKAGE is the generated package and NAIVE_APP the real app
("module:attribute"). Each variant swaps one function of the package's
`examples` module; everything else is the real service.
"""

import hashlib
import importlib
import itertools
import json
import os
import time

_package = os.environ["NAIVE_PACKAGE"]
examples = importlib.import_module(f"{_package}.examples")
schemas = importlib.import_module(f"{_package}.schemas")
backend = importlib.import_module(f"{_package}.backend")

_counters: dict[str, int] = {}
_fences = itertools.count(1)


def local_incr(name, raw):
    schemas.check_name(name)
    body = schemas.validate(schemas.parse_json(raw, empty_ok=True), schemas.INCREMENT)
    _counters[name] = _counters.get(name, 0) + body.get("by", 1)
    return 200, {"name": name, "value": _counters[name]}


def local_get(name):
    return 200, {"name": name, "value": _counters.get(name, 0)}


def unlocked_increment(name, raw):
    body = schemas.validate(schemas.parse_json(raw, empty_ok=True), schemas.LOCKED_INCREMENT)
    client = backend.state()._redis
    key = f"naive:{name}"
    value = int(client.get(key) or 0) + 1
    time.sleep(body.get("hold_ms", 0) / 1000)
    client.set(key, value)
    return 200, {"name": name, "value": value, "fencing_token": next(_fences)}


def fixed_path_export(raw):
    body = schemas.validate(schemas.parse_json(raw), schemas.EXPORT)
    store = examples.export_store()
    store.work.mkdir(parents=True, exist_ok=True)
    fixed = store.work / "export.txt"
    export_id = os.urandom(16).hex()
    digest = hashlib.sha256()
    with open(fixed, "wb") as out:
        head = f"label={body['label']}\n".encode()
        out.write(head)
        digest.update(head)
        left = body["size_bytes"] - len(head)
        while left > 0:
            chunk = b"x" * min(left, 1 << 16)
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    target = store.files / export_id
    target.mkdir(parents=True)
    os.replace(fixed, target / "export.txt")
    meta = {
        "id": export_id,
        "label": body["label"],
        "size": body["size_bytes"],
        "sha256": digest.hexdigest(),
        "filename": f"{body['label']}.txt",
    }
    (target / "meta.json").write_text(json.dumps(meta))
    return 201, examples._export_view(meta)


_VARIANTS = {
    "local_counter": {"incr_counter": local_incr, "get_counter": local_get},
    "no_lock": {"locked_increment": unlocked_increment},
    "fixed_path": {"create_export": fixed_path_export},
}

for _name, _function in _VARIANTS[os.environ["NAIVE_VARIANT"]].items():
    setattr(examples, _name, _function)

_module, _attribute = os.environ["NAIVE_APP"].split(":")
app = getattr(importlib.import_module(_module), _attribute)
