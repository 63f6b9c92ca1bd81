"""The example endpoints: each shows one multi-worker pitfall solved with the toolkit.

Counters live in the shared store, not in a worker's memory; the locked
increment is a read-modify-write made safe by a cross-process lock and its
fencing token; exports are written privately and published whole, and nginx
sends them; a task's child keeps its real exit code and is killed with its
group on timeout.
"""

from __future__ import annotations

import os
import socket
import time

from flask import Blueprint, Response, request, send_file

from .. import FRAMEWORK, inputs, processes
from ..examples import counting, tasks
from ..examples import exports as example_exports
from ..inputs import check_idempotency_key, check_name
from .context import rate_limited, runtime

bp = Blueprint("examples", __name__, url_prefix="/api")


@bp.get("/worker")
def worker() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        # Containers reuse pids (every replica's workers are 7, 8, ...): the host tells them apart.
        "host": socket.gethostname(),
        # gunicorn.conf.py's post_worker_init records the class that really runs.
        "worker_class": os.environ.get("APP_WORKER_CLASS", "unknown"),
        "framework": FRAMEWORK,
    }


@bp.post("/counters/<name>/incr")
def incr_counter(name: str) -> dict[str, object]:
    check_name(name)
    body = inputs.body("incr_counter", request.get_data())
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    rt, by = runtime(), int(body.get("by", 1))
    if key is None:
        value = rt.state.incr(name, by)
    else:
        # A retry of a request whose answer was lost (or a 503) counts once in all.
        value = rt.state.incr_once(name, by, key, rt.settings.idempotency_ttl)
    return {"name": name, "value": value}


@bp.get("/counters/<name>")
def get_counter(name: str) -> dict[str, object]:
    check_name(name)
    return {"name": name, "value": runtime().state.get_counter(name)}


@bp.post("/locked-increment/<name>")
@rate_limited
def locked_increment(name: str) -> dict[str, object]:
    check_name(name)
    body = inputs.body("locked_increment", request.get_data())
    rt = runtime()
    locks = rt.locks
    with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        value = counting.next_value(locks.read_fenced(name, counting.GUARDED_KEY))
        time.sleep(int(body.get("hold_ms", 0)) / 1000)
        locks.write_fenced(lease, counting.GUARDED_KEY, str(value))
    return {"name": name, "value": value, "fencing_token": lease.fence}


@bp.post("/exports")
@rate_limited
def create_export() -> tuple[dict[str, object], int]:
    body = inputs.body("create_export", request.get_data())
    meta = runtime().exports.create(**example_exports.create_args(body))
    return example_exports.public(meta), 201


@bp.get("/exports/<export_id>")
def get_export(export_id: str) -> dict[str, object]:
    return example_exports.public(runtime().exports.get(export_id))


@bp.get("/exports/<export_id>/download")
def download_export(export_id: str) -> Response:
    rt = runtime()
    meta = rt.exports.get(export_id)
    if rt.settings.export_delivery == "direct":
        # No nginx in front (make run): the worker sends the bytes itself.
        response = send_file(rt.exports.data_path(meta), mimetype=meta["content_type"])
    else:
        # nginx sends the file from its internal location; the worker sends no bytes.
        response = Response(headers={"X-Accel-Redirect": rt.exports.accel_path(meta)})
        response.content_type = meta["content_type"]
    # Not send_file's as_attachment: the name is quoted as the contract spells it.
    response.headers["Content-Disposition"] = example_exports.attachment(meta)
    return response


@bp.post("/tasks/run")
@rate_limited
def run_task() -> dict[str, object]:
    document = inputs.parse_json(request.get_data())
    tasks.check_known(document)  # 400 unknown_task, before the task's own fields
    task = inputs.validate("run_task", document)
    argv, timeout = tasks.task_argv(task)
    # A child holds this worker (or thread) to its end: past the host's cap, 503 at once.
    with runtime().slots.hold(tasks.LONG_WORK):
        done = processes.run(argv, timeout)
    return {"task": task["task"], **done.as_dict()}
