"""The gthread worker takes a new connection only while it has a free thread.

Real gunicorn, two workers of two threads, four slow requests at once on fresh
connections: each worker must serve two. gunicorn's own gthread worker goes on
accepting with every thread busy, so one worker often took three or four and
queued them behind its threads while the other idled.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from stack import procs

WORKERS = 2
THREADS = 2
# Long enough that every request arrives while the first ones are still held.
HOLD_SECONDS = 2.0
# How long two workers may take to boot on a loaded machine, and to stop.
BOOT_SECONDS = 60.0
STOP_SECONDS = 30.0

APP = f"""
import os, pathlib, time

pathlib.Path(os.environ["READY_DIR"], str(os.getpid())).touch()


def app(environ, start_response):
    time.sleep({HOLD_SECONDS})
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def test_the_hooks_it_extends_are_gunicorns():
    # It overrides gunicorn 27's gthread internals: a gunicorn that renames them
    # would silently turn it back into the plain worker. (Imported here: where the
    # package sorts against `stack` depends on the name the project chose.)
    from {{ cookiecutter.package_name }}.gthread_worker import FreeThreadWorker

    for name in ("set_accept_enabled", "enqueue_req", "finish_request"):
        assert name in vars(FreeThreadWorker.__mro__[1]), name


def _get(path: Path) -> int:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    return int(body)


@pytest.fixture
def gunicorn(tmp_path: Path):
    (tmp_path / "slow_app.py").write_text(APP)
    ready = tmp_path / "ready"
    ready.mkdir()
    sock = tmp_path / "g.sock"
    command = [
        sys.executable, "-m", "gunicorn", "slow_app:app",
        "--worker-class", "{{ cookiecutter.package_name }}.gthread_worker.FreeThreadWorker",
        "--workers", str(WORKERS), "--threads", str(THREADS),
        "--worker-connections", "1000", "--bind", f"unix:{sock}",
        "--graceful-timeout", "5", "--no-control-socket",
    ]  # fmt: skip
    child = procs.spawn(
        "gunicorn",
        command,
        cwd=tmp_path,
        env={**os.environ, "READY_DIR": str(ready), "PYTHONPATH": str(tmp_path)},
        output=tmp_path / "gunicorn.log",
    )
    try:
        procs.wait_until(
            lambda: len(list(ready.iterdir())) >= WORKERS and sock.exists(),
            child,
            timeout=BOOT_SECONDS,
            what=f"{WORKERS} booted workers",
        )
        yield sock
    finally:
        procs.stop(child, signal.SIGTERM, STOP_SECONDS)


def test_a_worker_with_every_thread_busy_leaves_new_connections_to_another(gunicorn):
    pids: list[int] = []
    guard = threading.Lock()

    def request() -> None:
        pid = _get(gunicorn)
        with guard:
            pids.append(pid)

    threads = [threading.Thread(target=request) for _ in range(WORKERS * THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(pids) == WORKERS * THREADS, pids
    served = {pid: pids.count(pid) for pid in set(pids)}
    assert sorted(served.values()) == [THREADS] * WORKERS, (
        f"requests per worker: {served}; a worker took more than its {THREADS} threads"
    )
