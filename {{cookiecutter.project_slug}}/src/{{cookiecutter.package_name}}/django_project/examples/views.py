"""The example endpoints: each shows one multi-worker pitfall solved with the toolkit.

Counters live in the shared store (through Django's cache, `counters`), not in
a worker's memory; the locked increment is a read-modify-write made safe by a
cross-process lock and its fencing token; exports are written privately and
published whole, and nginx sends them; a task's child keeps its real exit code
and is killed with its group on timeout. Every view is csrf_exempt: the API
takes no cookies, so there is no session for a forged request to ride.
"""

from __future__ import annotations

import os
import socket
import time

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from ... import FRAMEWORK, inputs, processes
from ...examples import counting, tasks
from ...examples import exports as example_exports
from ...inputs import check_idempotency_key, check_name
from ..apps import runtime
from ..decorators import rate_limited
from . import counters


@csrf_exempt
@require_safe
def worker(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "pid": os.getpid(),
            # Containers reuse pids (every replica's workers are 7, 8, ...): the
            # host tells them apart.
            "host": socket.gethostname(),
            # gunicorn.conf.py's post_worker_init records the class that really runs.
            "worker_class": os.environ.get("APP_WORKER_CLASS", "unknown"),
            "framework": FRAMEWORK,
        }
    )


@csrf_exempt
@require_POST
def incr_counter(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    body = inputs.body("incr_counter", request.body)
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    return JsonResponse({"name": name, "value": counters.incr(name, int(body.get("by", 1)), key)})


@csrf_exempt
@require_safe
def get_counter(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    return JsonResponse({"name": name, "value": counters.get(name)})


@csrf_exempt
@require_POST
@rate_limited
def locked_increment(request: HttpRequest, name: str) -> HttpResponse:
    check_name(name)
    body = inputs.body("locked_increment", request.body)
    rt = runtime()
    locks = rt.locks
    with locks.hold(name, ttl=rt.settings.lock_ttl, wait=rt.settings.lock_wait) as lease:
        value = counting.next_value(locks.read_fenced(name, counting.GUARDED_KEY))
        time.sleep(int(body.get("hold_ms", 0)) / 1000)
        locks.write_fenced(lease, counting.GUARDED_KEY, str(value))
    return JsonResponse({"name": name, "value": value, "fencing_token": lease.fence})


@csrf_exempt
@require_POST
@rate_limited
def create_export(request: HttpRequest) -> HttpResponse:
    body = inputs.body("create_export", request.body)
    meta = runtime().exports.create(**example_exports.create_args(body))
    return JsonResponse(example_exports.public(meta), status=201)


@csrf_exempt
@require_safe
def get_export(request: HttpRequest, export_id: str) -> HttpResponse:
    return JsonResponse(example_exports.public(runtime().exports.get(export_id)))


@csrf_exempt
@require_safe
def download_export(request: HttpRequest, export_id: str) -> HttpResponseBase:
    rt = runtime()
    meta = rt.exports.get(export_id)
    response: HttpResponseBase
    if rt.settings.export_delivery == "direct":
        # No nginx in front (make run): the worker sends the bytes itself.
        data = open(rt.exports.data_path(meta), "rb")  # noqa: SIM115 (FileResponse closes it)
        response = FileResponse(data, content_type=meta["content_type"])
    else:
        # nginx sends the file from its internal location; the worker sends no bytes,
        # but the file's type, which nginx passes on (not HttpResponse's text/html).
        response = HttpResponse(content_type=meta["content_type"])
        response["X-Accel-Redirect"] = rt.exports.accel_path(meta)
    # Not FileResponse's as_attachment: the name is quoted as the contract spells it.
    response["Content-Disposition"] = example_exports.attachment(meta)
    return response


@csrf_exempt
@require_POST
@rate_limited
def run_task(request: HttpRequest) -> HttpResponse:
    document = inputs.parse_json(request.body)
    tasks.check_known(document)
    task = inputs.validate("run_task", document)
    argv, timeout = tasks.task_argv(task)
    # A child holds this worker (or thread) to its end: past the host's cap, 503 at once.
    with runtime().slots.hold(tasks.LONG_WORK):
        done = processes.run(argv, timeout)
    return JsonResponse({"task": task["task"], **done.as_dict()})
