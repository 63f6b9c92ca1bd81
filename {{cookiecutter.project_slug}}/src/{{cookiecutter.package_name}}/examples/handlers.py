"""The example endpoints, once, for every framework.

Counters, a locked read-modify-write, exports and child tasks: each shows one
multi-worker pitfall solved with the toolkit. Each handler takes a `Call` and
returns a `Reply`.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from .. import FRAMEWORK, inputs, processes, runtime
from ..config import Settings
from ..exports import ExportStore
from ..inputs import check_name
from ..replies import Call, Reply, download_reply, json_reply
from . import counting, tasks
from . import exports as example_exports

LONG_WORK = tasks.LONG_WORK
GUARDED_KEY = counting.GUARDED_KEY
next_value = counting.next_value


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


def locked_reply(name: str, value: int, fence: int) -> Reply:
    return json_reply(200, {"name": name, "value": value, "fencing_token": fence})


def export_request(call: Call) -> dict[str, Any]:
    """The arguments of `ExportStore.create` for this request, its content included."""
    return example_exports.create_args(inputs.body("create_export", call.body))


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


def _export_view(meta: dict[str, Any]) -> dict[str, object]:
    return example_exports.public(meta)


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
