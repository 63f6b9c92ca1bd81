"""`make run` serves a working multi-worker app with nothing but Python.

No Redis and no nginx: the embedded backend is shared by the workers, and
export downloads are sent by the application itself.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import Project, clean_env, group_alive, spawn_logged

START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(generate, tmp_path_factory):
    project: Project = generate()
    project.install()
    port = free_port()
    log = tmp_path_factory.mktemp("make-run") / "make-run.log"
    # No nginx or redis-server on PATH: `make run` must not need them.
    env = clean_env(PATH="/usr/local/bin:/usr/bin:/bin")
    process = spawn_logged(["make", "run", f"RUN_PORT={port}"], cwd=project.path, log=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            # gunicorn's master listens before its workers boot: until one
            # accepts, a probe waits in the backlog and may time out.
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base, process, log
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_several_workers_share_the_embedded_backend(served):
    base, _, log = served
    assert "Serving http://127.0.0.1:" in log.read_text()
    name = f"run-{uuid.uuid4().hex[:12]}"

    def incr(_: int) -> int:
        response = requests.post(f"{base}/api/counters/{name}/incr", timeout=30)
        assert response.status_code == 200, response.text
        return requests.get(f"{base}/api/worker", timeout=30).json()["pid"]

    with ThreadPoolExecutor(16) as pool:
        pids = set(pool.map(incr, range(200)))
    assert len(pids) >= 2, "make run must start at least two workers"
    assert requests.get(f"{base}/api/counters/{name}", timeout=10).json()["value"] == 200


def test_locks_hold_across_the_workers(served):
    base, _, _ = served
    name = f"runlock-{uuid.uuid4().hex[:12]}"

    def locked(_: int) -> dict:
        response = requests.post(
            f"{base}/api/locked-increment/{name}", json={"hold_ms": 10}, timeout=60
        )
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(locked, range(20)))
    assert sorted(a["value"] for a in answers) == list(range(1, 21))
    by_value = sorted(answers, key=lambda a: a["value"])
    tokens = [a["fencing_token"] for a in by_value]
    assert tokens == sorted(set(tokens))


def test_downloads_are_sent_by_the_app_without_nginx(served):
    base, _, _ = served
    created = requests.post(
        f"{base}/api/exports", json={"size_bytes": 3_000_000, "label": "direct"}, timeout=60
    ).json()
    response = requests.get(base + created["download_url"], timeout=60)
    assert response.status_code == 200
    assert "X-Accel-Redirect" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == created["sha256"]
    assert response.content.startswith(b"label=direct\n")
    assert 'filename="direct.txt"' in response.headers["Content-Disposition"]


def test_ctrl_c_stops_everything(served):
    _, process, log = served
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    deadline = time.monotonic() + 15
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(process.pid), "gunicorn workers outlived Ctrl-C\n" + log.read_text()
