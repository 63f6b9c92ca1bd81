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
from typing import Any

from .. import FRAMEWORK, inputs, processes, runtime
from ..config import Settings
from ..exports import ExportStore
from ..inputs import check_name
from ..replies import Call, Reply, download_reply, json_reply
from . import tasks

# What a task's slot is called in a `busy` answer.
LONG_WORK = "child tasks"
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


# What each handler reads from its request and how it answers, apart from what
# it does in between: the async twins (aio_handlers.py) share these, so the two
# cannot drift in what they accept or say.


def idempotency_key(call: Call) -> str | None:
    """The request's Idempotency-Key, checked (the same rule as a name); None if absent."""
    return inputs.check_idempotency_key(call.header("Idempotency-Key"))


def increment_request(call: Call) -> tuple[str, int, str | None]:
    """(counter name, by, Idempotency-Key or None)."""
    name = check_name(call.params["name"])
    body = inputs.body("incr_counter", call.body)
    return name, int(body.get("by", 1)), idempotency_key(call)


def counter_reply(name: str, value: int) -> Reply:
    return json_reply(200, {"name": name, "value": value})


def locked_increment_request(call: Call) -> tuple[str, float]:
    """(lock name, seconds to hold it)."""
    name = check_name(call.params["name"])
    body = inputs.body("locked_increment", call.body)
    return name, int(body.get("hold_ms", 0)) / 1000


def next_value(current: bytes | None) -> int:
    """A deliberately non-atomic read-modify-write: only the lock makes it safe."""
    return int(current or 0) + 1


def locked_reply(name: str, value: int, fence: int) -> Reply:
    return json_reply(200, {"name": name, "value": value, "fencing_token": fence})


def export_request(call: Call) -> dict[str, Any]:
    """The arguments of `ExportStore.create` for this request, its content included."""
    body = inputs.body("create_export", call.body)
    label, size = body["label"], int(body["size_bytes"])
    return {
        "chunks": _content(label, size),
        "size": size,
        "filename": f"{label}.txt",
        "content_type": "text/plain; charset=utf-8",
        "label": label,
    }


def export_reply(meta: dict[str, Any], status: int = 200) -> Reply:
    return json_reply(status, _export_view(meta))


def download(settings: Settings, exports: ExportStore, meta: dict[str, Any]) -> Reply:
    direct = settings.export_delivery == "direct"
    return download_reply(
        filename=meta["filename"],
        content_type=meta["content_type"],
        accel_path=exports.accel_path(meta),
        file=exports.data_path(meta) if direct else None,
    )


def task_request(call: Call) -> tuple[str, list[str], float]:
    """(task name, the child's argv, its timeout)."""
    document = inputs.parse_json(call.body)
    tasks.check_known(document)
    request = inputs.validate("run_task", document)
    argv, timeout = tasks.task_argv(request)
    return request["task"], argv, timeout


def task_reply(task: str, done: processes.Completed) -> Reply:
    return json_reply(200, {"task": task, **done.as_dict()})


def _content(label: str, size: int) -> Iterator[bytes]:
    """The line `label=<label>`, then filler, `size` bytes in all (a prefix if smaller)."""
    header = f"label={label}\n".encode()[:size]
    yield header
    left = size - len(header)
    while left > 0:
        chunk = _FILLER[: min(left, CHUNK)]
        yield chunk
        left -= len(chunk)


def _export_view(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": meta["id"],
        "label": meta["label"],
        "size": meta["size"],
        "sha256": meta["sha256"],
        "download_url": f"/api/exports/{meta['id']}/download",
    }


# The handlers: parse, act, answer.


def incr_counter(call: Call) -> Reply:
    name, by, key = increment_request(call)
    rt = runtime.current()
    if key is None:
        value = rt.state.incr(name, by)
    else:
        # A retry of a request whose answer was lost (or a 503) counts once in all.
        value = rt.state.incr_once(name, by, key, rt.settings.idempotency_ttl)
    return counter_reply(name, value)


def get_counter(call: Call) -> Reply:
    name = check_name(call.params["name"])
    return counter_reply(name, runtime.current().state.get_counter(name))


def locked_increment(call: Call) -> Reply:
    name, hold = locked_increment_request(call)
    rt = runtime.current()
    locks = rt.locks
    with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        value = next_value(locks.read_fenced(name, GUARDED_KEY))
        time.sleep(hold)
        locks.write_fenced(lease, GUARDED_KEY, str(value))
    return locked_reply(name, value, lease.fence)


def create_export(call: Call) -> Reply:
    meta = runtime.current().exports.create(**export_request(call))
    return export_reply(meta, 201)


def get_export(call: Call) -> Reply:
    return export_reply(runtime.current().exports.get(call.params["export_id"]))


def download_export(call: Call) -> Reply:
    rt = runtime.current()
    return download(rt.settings, rt.exports, rt.exports.get(call.params["export_id"]))


def run_task(call: Call) -> Reply:
    task, argv, timeout = task_request(call)
    # A child holds this worker (or thread) to its end: past the host's cap, 503 at once.
    with runtime.current().slots.hold(LONG_WORK):
        return task_reply(task, processes.run(argv, timeout))
