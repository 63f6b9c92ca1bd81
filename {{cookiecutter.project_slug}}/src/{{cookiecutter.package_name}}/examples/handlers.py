"""The example endpoints, once, for every framework.

Counters, a locked read-modify-write, exports and child tasks: each shows one
multi-worker pitfall solved with the toolkit. Each handler takes a `Call` and
returns a `Reply`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

from .. import FRAMEWORK, processes, runtime
from ..errors import InvalidInput
from ..replies import Call, Reply, download_reply, json_reply
from ..schemas import NAME_PATTERN, check_name, parse_json, validate
from . import schemas, tasks

# The guarded value's key among the data each lock fences.
GUARDED_KEY = "value"
CHUNK = 1 << 20
_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
_FILLER = (_PATTERN * (CHUNK // len(_PATTERN) + 1))[:CHUNK]


def worker(call: Call) -> Reply:
    return json_reply(
        200,
        {
            "pid": os.getpid(),
            # Containers reuse pids (every replica's workers are 7, 8, ...): the
            # hostname tells them apart.
            "host": socket.gethostname(),
            # gunicorn.conf.py's post_worker_init records the class that really runs.
            "worker_class": os.environ.get("APP_WORKER_CLASS", "unknown"),
            "framework": FRAMEWORK,
        },
    )


def idempotency_key(call: Call) -> str | None:
    """The request's Idempotency-Key, checked (the same rule as a name); None if absent."""
    key = call.header("Idempotency-Key")
    if key is not None and not NAME_PATTERN.fullmatch(key):
        raise InvalidInput(
            "invalid_idempotency_key",
            "An Idempotency-Key is 1 to 64 characters of A-Z a-z 0-9 _ . -",
        )
    return key


def incr_counter(call: Call) -> Reply:
    name = check_name(call.params["name"])
    body = validate(parse_json(call.body, empty_ok=True), schemas.INCREMENT)
    by, key = int(body.get("by", 1)), idempotency_key(call)
    rt = runtime.current()
    if key is None:
        value = rt.state.incr(name, by)
    else:
        # A retry of a request whose answer was lost (or a 503) counts once in all.
        value = rt.state.incr_once(name, by, key, rt.settings.idempotency_ttl)
    return json_reply(200, {"name": name, "value": value})


def get_counter(call: Call) -> Reply:
    name = check_name(call.params["name"])
    return json_reply(200, {"name": name, "value": runtime.current().state.get_counter(name)})


def locked_increment(call: Call) -> Reply:
    name = check_name(call.params["name"])
    body = validate(parse_json(call.body, empty_ok=True), schemas.LOCKED_INCREMENT)
    hold = int(body.get("hold_ms", 0)) / 1000
    rt = runtime.current()
    locks = rt.locks
    with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        # A deliberately non-atomic read-modify-write: only the lock makes it safe.
        value = int(locks.read_fenced(name, GUARDED_KEY) or 0) + 1
        time.sleep(hold)
        locks.write_fenced(lease, GUARDED_KEY, str(value))
    return json_reply(200, {"name": name, "value": value, "fencing_token": lease.fence})


def _content(label: str, size: int) -> Iterator[bytes]:
    """The line `label=<label>`, then filler, `size` bytes in all (a prefix if smaller)."""
    header = f"label={label}\n".encode()[:size]
    yield header
    left = size - len(header)
    while left > 0:
        chunk = _FILLER[: min(left, CHUNK)]
        yield chunk
        left -= len(chunk)


def _export_view(meta: dict) -> dict:
    return {
        "id": meta["id"],
        "label": meta["label"],
        "size": meta["size"],
        "sha256": meta["sha256"],
        "download_url": f"/api/exports/{meta['id']}/download",
    }


def create_export(call: Call) -> Reply:
    body = validate(parse_json(call.body), schemas.EXPORT)
    label, size = body["label"], int(body["size_bytes"])
    meta = runtime.current().exports.create(
        _content(label, size),
        size=size,
        filename=f"{label}.txt",
        content_type="text/plain; charset=utf-8",
        label=label,
    )
    return json_reply(201, _export_view(meta))


def get_export(call: Call) -> Reply:
    return json_reply(200, _export_view(runtime.current().exports.get(call.params["export_id"])))


def download_export(call: Call) -> Reply:
    rt = runtime.current()
    meta = rt.exports.get(call.params["export_id"])
    direct = rt.settings.export_delivery == "direct"
    return download_reply(
        filename=meta["filename"],
        content_type=meta["content_type"],
        accel_path=rt.exports.accel_path(meta),
        file=rt.exports.data_path(meta) if direct else None,
    )


def run_task(call: Call) -> Reply:
    request = schemas.task_request(parse_json(call.body))
    argv, timeout = tasks.task_argv(request)
    return json_reply(200, {"task": request["task"], **processes.run(argv, timeout).as_dict()})
