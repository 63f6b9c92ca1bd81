"""`make stack` itself: it stays up with either backend and stops on a signal.

The integration suite drives the stack's class directly; this runs the
command a developer types, reads the BASE_URL it prints, and stops it the way
a terminal or a supervisor does.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time

import pytest
import requests

from conftest import Project, clean_env, group_alive, log_tail, spawn_logged

START_SECONDS = 120
STOP_SECONDS = 60
# Longer than the runner's watch interval, so a wrong "stopped unexpectedly" would show.
STAYS_UP_SECONDS = 4


@pytest.mark.parametrize("backend", ["redis", "embedded"])
def test_make_stack_stays_up_and_stops_on_sigterm(generate, tmp_path, backend):
    project: Project = generate()
    project.install()
    log = tmp_path / "make-stack.log"
    run_dir = tmp_path / "run"
    env = clean_env(STACK_BACKEND=backend)
    process = spawn_logged(
        ["make", "stack", f"STACK_ARGS=--run-dir {run_dir}"], cwd=project.path, log=log, env=env
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (found := re.search(r"^BASE_URL=(\S+)$", log.read_text(), re.MULTILINE)):
            assert process.poll() is None, log_tail(log)
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.2)
        base = found[1]
        time.sleep(STAYS_UP_SECONDS)
        assert process.poll() is None, f"make stack stopped by itself\n{log_tail(log)}"
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 200

        # A supervisor's TERM, repeated at random moments: each must be handled.
        runner = [
            int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _is_runner(pid, run_dir)
        ]
        assert len(runner) == 1, runner
        for _ in range(50):
            os.kill(runner[0], signal.SIGTERM)
            time.sleep(random.uniform(0, 0.005))  # noqa: S311 (timing, not a secret)
        process.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + 15
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_alive(process.pid), "servers outlived the stack\n" + log_tail(log)
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for name in ("gunicorn.pid", "redis.pid", "nginx/nginx.pid"):
        pidfile = run_dir / name
        if pidfile.exists() and pidfile.read_text().strip().isdigit():
            pid = int(pidfile.read_text())
            assert not os.path.exists(f"/proc/{pid}"), f"{name}: pid {pid} still runs"


def _is_runner(pid: str, run_dir) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"stack" in argv and str(run_dir).encode() in argv
