"""The example endpoints of the HTTP contract, once, for every framework.

Counters, a locked read-modify-write, exports and child tasks: each shows one
multi-worker pitfall solved with the toolkit. Like `health`, each function
takes the path parameters and raw body and returns `(status, payload)`.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import backend, config, processes, schemas
from .exports import ExportStore


def worker(framework: str) -> tuple[int, dict]:
    return 200, {
        "pid": os.getpid(),
        # Containers reuse pids (every replica's workers are 7, 8, ...): the
        # hostname tells them apart.
        "host": socket.gethostname(),
        # gunicorn.conf.py's post_worker_init records the class that really runs.
        "worker_class": os.environ.get("APP_WORKER_CLASS", "unknown"),
        "framework": framework,
    }


def incr_counter(name: str, raw: bytes) -> tuple[int, dict]:
    schemas.check_name(name)
    body = schemas.validate(schemas.parse_json(raw, empty_ok=True), schemas.INCREMENT)
    with backend.unavailable_on_error():
        value = backend.state().incr(name, int(body.get("by", 1)))
    return 200, {"name": name, "value": value}


def get_counter(name: str) -> tuple[int, dict]:
    schemas.check_name(name)
    with backend.unavailable_on_error():
        value = backend.state().get_counter(name)
    return 200, {"name": name, "value": value}


def locked_increment(name: str, raw: bytes) -> tuple[int, dict]:
    schemas.check_name(name)
    body = schemas.validate(schemas.parse_json(raw, empty_ok=True), schemas.LOCKED_INCREMENT)
    hold = int(body.get("hold_ms", 0)) / 1000
    settings = config.settings()
    with backend.unavailable_on_error():
        locks = backend.locks()
        with locks.hold(name, ttl=settings.lock_ttl, wait=settings.lock_wait) as lease:
            # A deliberately non-atomic read-modify-write: only the lock makes it safe.
            value = locks.read_guarded(lease) + 1
            time.sleep(hold)
            locks.write_guarded(lease, value)
    return 200, {"name": name, "value": value, "fencing_token": lease.fence}


@lru_cache(maxsize=1)
def export_store() -> ExportStore:
    settings = config.settings()
    return ExportStore(settings.export_dir, settings.export_accel_prefix, settings.export_max_age)


def _export_view(meta: dict) -> dict:
    return {
        "id": meta["id"],
        "label": meta["label"],
        "size": meta["size"],
        "sha256": meta["sha256"],
        "download_url": f"/api/exports/{meta['id']}/download",
    }


def create_export(raw: bytes) -> tuple[int, dict]:
    body = schemas.validate(schemas.parse_json(raw), schemas.EXPORT)
    meta = export_store().create(body["label"], int(body["size_bytes"]))
    return 201, _export_view(meta)


def get_export(export_id: str) -> tuple[int, dict]:
    return 200, _export_view(export_store().get(export_id))


@dataclass(frozen=True)
class Download:
    headers: dict[str, str]
    # Set only in "direct" delivery (no nginx in front): the app sends this file.
    path: Path | None


def download(export_id: str) -> Download:
    """How to answer a download: handed to nginx (X-Accel-Redirect), so the worker
    sends no bytes; only in "direct" delivery, the file for the app to send."""
    store = export_store()
    meta = store.get(export_id)
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{meta["filename"]}"',
    }
    if config.settings().export_delivery == "direct":
        return Download(headers, store.data_path(meta))
    return Download({"X-Accel-Redirect": store.accel_path(meta), **headers}, None)


def run_task(raw: bytes) -> tuple[int, dict]:
    request = schemas.task_request(schemas.parse_json(raw))
    argv, timeout = processes.task_argv(request)
    return 200, processes.run(request["task"], argv, timeout).as_dict()
