"""Faults an operator causes: stopping, reloading and recycling under load.

Stopping the stack must let every request shorter than gunicorn's graceful
timeout finish, and must leave nothing behind that a request started (a
task's children run in sessions of their own, which no process-group kill
reaches). A reload (SIGHUP) or a worker recycled by `max_requests` in the
middle of a burst must cost no request and no count.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from client import Client, assert_json, describe, processes_mentioning, run_concurrently, unique
from stacks import own_stack_or_skip

# Longer than the stack's old fixed 10 s wait for nginx, shorter than the graceful
# timeout below: a request that the old stop cut and the contract says must finish.
LONG_REQUEST_SECONDS = 11.5
GRACEFUL_SECONDS = 20


@pytest.fixture
def graceful_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    env = {"WEB_CONCURRENCY": "3", "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_SECONDS)}
    with own_stack_or_skip(tmp_path_factory, "graceful", env) as started:
        yield started


@pytest.fixture
def quick_stop_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A graceful timeout of 2 s: a long task is cut by the stop, and must leave nothing."""
    env = {"WEB_CONCURRENCY": "2", "GUNICORN_GRACEFUL_TIMEOUT": "2"}
    with own_stack_or_skip(tmp_path_factory, "quick-stop", env) as started:
        yield started


@pytest.fixture
def recycling_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Workers recycled every few dozen requests, as a leaky service might configure."""
    env = {
        "WEB_CONCURRENCY": "3",
        "GUNICORN_MAX_REQUESTS": "30",
        "GUNICORN_MAX_REQUESTS_JITTER": "10",
    }
    with own_stack_or_skip(tmp_path_factory, "recycling", env) as started:
        yield started


def marker_seconds(low: float) -> str:
    """A sleep length (its repr is in the child's argv) that no process mentions yet."""
    for _ in range(100):
        value = repr(round(low + random.uniform(0.001, 0.999), 3))
        if not processes_mentioning(value):
            return value
    raise AssertionError(f"every {low}.xxx value is in some process's command line")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


def in_background(call) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        started = time.monotonic()
        try:
            outcome["resp"] = call()
        except BaseException as exc:  # the test reports it
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_stop_lets_requests_in_flight_finish(graceful_stack) -> None:
    client = Client(graceful_stack.base_url)
    value = marker_seconds(LONG_REQUEST_SECONDS)
    # One per worker at most (under the sync class a fourth would only queue), and no
    # more than the cap on tasks admits (two of three sync workers).
    count = min(3, graceful_stack.gunicorn_settings.long_work_cap)
    calls = [
        in_background(
            lambda: client.post(
                "/api/tasks/run",
                json={"task": "sleep", "seconds": float(value), "timeout": 30},
                timeout=GRACEFUL_SECONDS + 30,
            )
        )
        for _ in range(count)
    ]
    # Each task's reaper, child and grandchild mention it.
    wait_for(lambda: len(processes_mentioning(value)) >= 3 * count, 15, "the tasks to be running")
    stop_started = time.monotonic()
    graceful_stack.stop()
    stopped_after = time.monotonic() - stop_started

    for thread, outcome in calls:
        thread.join(timeout=GRACEFUL_SECONDS + 30)
        assert "error" not in outcome, f"a request in flight was cut: {outcome['error']!r}"
        body = assert_json(outcome["resp"], 200)
        assert body["timed_out"] is False and body["returncode"] == 0, body
    assert not processes_mentioning(value), "a task's process outlived the stack"
    assert stopped_after < GRACEFUL_SECONDS + 10, f"the stop took {stopped_after:.1f} s"


def test_stop_leaves_no_task_process_behind(quick_stop_stack) -> None:
    client = Client(quick_stop_stack.base_url)
    value = marker_seconds(50)
    thread, _outcome = in_background(
        lambda: client.post(
            "/api/tasks/run", json={"task": "sleep", "seconds": float(value), "timeout": 60}
        )
    )
    # The task's reaper, its child (python childtasks.py) and its grandchild (sleep).
    wait_for(lambda: len(processes_mentioning(value)) >= 3, 15, "the task to be running")
    quick_stop_stack.stop()
    thread.join(timeout=30)
    # Its request was longer than the graceful timeout, so it may be cut; what it
    # started may not outlive the stack.
    wait_for(lambda: not processes_mentioning(value), 10, "the task's processes to be gone")


def worker_running(marker: str) -> int:
    """The gunicorn worker whose task mentions `marker`: its reaper's parent."""
    for pid, cmdline in processes_mentioning(marker):
        if "reaper.py" not in cmdline:
            continue
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2 :].split()[1])  # field 4: the parent's pid
    raise AssertionError(f"no task mentioning {marker} runs")


def test_killed_worker_leaves_no_task_process_behind(stack, client: Client) -> None:
    value = marker_seconds(50)
    thread, outcome = in_background(
        lambda: client.post(
            "/api/tasks/run", json={"task": "sleep", "seconds": float(value), "timeout": 60}
        )
    )
    wait_for(lambda: len(processes_mentioning(value)) >= 3, 15, "the task to be running")
    worker = worker_running(value)
    assert worker in stack.ready_workers(), f"{worker} is not one of gunicorn's workers"
    os.kill(worker, signal.SIGKILL)
    thread.join(timeout=30)
    # The killed worker's request cannot be answered; nginx says so in JSON.
    if "resp" in outcome:
        assert outcome["resp"].status_code == 502, describe(outcome["resp"])
    wait_for(lambda: not processes_mentioning(value), 10, "the dead worker's task to be gone")
    # The arbiter replaced the worker; the service answers.
    assert_json(client.get("/healthz"), 200)


def test_reload_and_recycling_lose_no_request(recycling_stack) -> None:
    client = Client(recycling_stack.base_url)
    name = unique("reload")
    total = 600
    reloads = 3
    slowest = [0.0]
    done = [0]
    guard = threading.Lock()
    # A reload after each quarter of the burst, so each one lands in the middle of it.
    quarters = [threading.Event() for _ in range(reloads)]

    def incr() -> int:
        started = time.monotonic()
        resp = client.post(f"/api/counters/{name}/incr")
        with guard:
            slowest[0] = max(slowest[0], time.monotonic() - started)
            done[0] += 1
            for index, event in enumerate(quarters):
                if done[0] >= total * (index + 1) // (reloads + 1):
                    event.set()
        return resp.status_code if resp.status_code == 200 else describe(resp)

    def reload_in_flight() -> None:
        # HUP: gunicorn starts new workers first, then stops the old ones gracefully.
        for event in quarters:
            if event.wait(timeout=120):
                os.kill(recycling_stack.pids()["gunicorn"], signal.SIGHUP)

    reloader = threading.Thread(target=reload_in_flight)
    reloader.start()
    statuses = run_concurrently([incr] * total, threads=8)
    reloader.join()
    failed = [status for status in statuses if status != 200]
    assert not failed, f"{len(failed)} of {total} failed during reloads: {failed[:5]}"
    body = assert_json(client.get(f"/api/counters/{name}"), 200)
    assert body["value"] == total, body
    # Each reload replaced all three workers (and max_requests 30-40 recycled more):
    # the last reload's workers may still be booting when the burst ends.
    wait_for(
        lambda: len(recycling_stack.ready_workers()) >= 3 + 3 * reloads,
        60,
        f"the workers of {reloads} reloads to be ready",
    )
    print(f"reload+recycling: {total} requests, 0 failed, slowest {slowest[0]:.2f} s")
