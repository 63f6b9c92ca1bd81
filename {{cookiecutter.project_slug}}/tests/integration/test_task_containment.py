"""Nothing a task starts outlives it: not a grandchild that leaves its session, not
a master killed while the task runs.

A grandchild that calls setsid() leaves the task's process group, so a group kill
misses it; holding the task's stdout, it kept the answer, and the worker, waiting
past the timeout, and as a daemon it ran on after the answer. A task's answer
comes within its timeout and a small bound whatever its descendants do, and by
then none of them runs. When gunicorn's master is killed outright, its workers
and every process their tasks started are gone within a bound, and stopping the
stack removes the socket, pid file and control socket the master could not.

The task is escaping_task.py behind a test route (escaping_app.py, the real app
with that route more): the example tasks start no such grandchild.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client import Client, assert_json, processes_mentioning
from stacks import own_stack_or_skip

HERE = Path(__file__).resolve().parent
# What an answer may take past the task's end or timeout: the reaper needs
# milliseconds to end everything, the rest is a loaded machine's scheduling.
ANSWER_MARGIN_SECONDS = 2.0
# A master is killed: by then its workers, and all their tasks started, are gone.
MASTER_GONE_SECONDS = 10.0


def stack_env(workers: int) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {
        "WEB_CONCURRENCY": str(workers),
        "APP_MODULE": "escaping_app:app",
        "PYTHONPATH": pythonpath,
    }


@pytest.fixture(scope="module")
def escaping_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with own_stack_or_skip(tmp_path_factory, "escaping", stack_env(2)) as started:
        yield started


@pytest.fixture
def doomed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A stack of its own, whose master the test kills: the directory where its workers
    note their tasks, which the master removes at its exit, is pytest's to remove."""
    env = {**stack_env(3), "APP_CHILDREN_DIR": str(tmp_path_factory.mktemp("doomed-tasks"))}
    with own_stack_or_skip(tmp_path_factory, "doomed", env) as started:
        yield started


def marker_seconds(low: int) -> str:
    """A sleep length (in every command line of the task) that no process mentions yet."""
    for _ in range(100):
        value = f"{low}.{random.randint(100, 999)}"
        if not processes_mentioning(value):
            return value
    raise AssertionError(f"every {low}.xxx value is in some process's command line")


@pytest.fixture
def leftovers() -> Iterator[list[str]]:
    """Markers of the test's tasks: whatever still mentions one afterwards is killed,
    so a failing run leaves no sleeper behind (it has failed by then)."""
    markers: list[str] = []
    yield markers
    for marker in markers:
        for pid, _ in processes_mentioning(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def programs_mentioning(seconds: str) -> list[tuple[int, str]]:
    """The task's own processes (its child and grandchild), not the reaper that runs them."""
    return [found for found in processes_mentioning(seconds) if "reaper.py" not in found[1]]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name (field 2) is in parentheses and may itself contain ") ".
    return stat[stat.rindex(")") + 2 :].split()[0] not in "ZX"


def run_escaping(client: Client, child: str, grandchild: str, seconds: str, timeout: int):
    path = f"/api/test/escaping-task/{child}/{grandchild}/{seconds}/{timeout}"
    started = time.monotonic()
    # Past the timeout and the margin, the answer is late: no longer waited for.
    resp = client.post(path, timeout=timeout + ANSWER_MARGIN_SECONDS + 3)
    return assert_json(resp, 200), time.monotonic() - started


def test_a_grandchild_that_leaves_and_holds_stdout_ends_at_the_timeout(
    escaping_stack, leftovers: list[str]
) -> None:
    client = Client(escaping_stack.base_url)
    seconds = marker_seconds(40)
    leftovers.append(seconds)
    timeout = 1
    body, took = run_escaping(client, "wait", "hold", seconds, timeout)
    assert body["timed_out"] is True, body
    assert body["returncode"] == -signal.SIGKILL, body
    assert took < timeout + ANSWER_MARGIN_SECONDS, f"answered after {took:.2f} s"
    # Both wrote their pid before the timeout; neither runs once the answer came.
    started = dict(line.split() for line in body["stdout"].splitlines())
    assert set(started) == {"child", "grandchild"}, body
    assert not [name for name, pid in started.items() if alive(int(pid))], started
    assert not processes_mentioning(seconds), "a process of the task outlived its answer"


@pytest.mark.parametrize("grandchild", ["hold", "detach"])
def test_what_a_finished_task_left_running_ends_with_it(
    escaping_stack, leftovers: list[str], grandchild: str
) -> None:
    client = Client(escaping_stack.base_url)
    seconds = marker_seconds(41)
    leftovers.append(seconds)
    timeout = 10
    body, took = run_escaping(client, "exit", grandchild, seconds, timeout)
    assert (body["returncode"], body["timed_out"]) == (3, False), body
    # The child exits at once: its answer waits for no timeout.
    assert took < ANSWER_MARGIN_SECONDS + 1, f"answered after {took:.2f} s"
    started = dict(line.split() for line in body["stdout"].splitlines())
    assert set(started) == {"child", "grandchild"}, body
    assert not alive(int(started["grandchild"])), f"the {grandchild} grandchild runs on"
    assert not processes_mentioning(seconds), "a process of the task outlived its answer"


def test_a_killed_master_leaves_no_worker_and_no_task_running(
    doomed_stack, leftovers: list[str]
) -> None:
    client = Client(doomed_stack.base_url)
    workers = doomed_stack.ready_workers()
    # Two long tasks, one whose grandchild holds the stdout and one whose grandchild
    # detached.
    markers = {grandchild: marker_seconds(50) for grandchild in ("hold", "detach")}
    leftovers.extend(markers.values())
    calls = []
    for grandchild, seconds in markers.items():
        call = threading.Thread(
            target=lambda g=grandchild, s=seconds: _answer_or_error(client, g, s), daemon=True
        )
        call.start()
        calls.append(call)
    deadline = time.monotonic() + 15
    while not all(len(programs_mentioning(s)) == 2 for s in markers.values()):
        assert time.monotonic() < deadline, "the two tasks never ran"
        time.sleep(0.05)

    run_dir = doomed_stack.run_dir
    master_files = [run_dir / name for name in ("gunicorn.sock", "gunicorn.pid", "gunicorn.ctl")]
    os.kill(doomed_stack.pids()["gunicorn"], signal.SIGKILL)
    killed = time.monotonic()
    while True:
        running = [pid for pid in workers if alive(pid)]
        left = [p for s in markers.values() for p in processes_mentioning(s)]
        if not running and not left:
            gone = time.monotonic() - killed
            print(f"master killed: its workers and their tasks gone {gone:.2f} s later")
            break
        assert time.monotonic() - killed < MASTER_GONE_SECONDS, (
            f"{MASTER_GONE_SECONDS:g} s after the master was killed, workers {running} "
            f"and these processes of their tasks still run: {left}"
        )
        time.sleep(0.05)
    for call in calls:
        call.join(timeout=30)

    # A master killed outright removes nothing; the stack's stop does.
    assert [path.name for path in master_files if path.exists()] == [
        path.name for path in master_files
    ], "the killed master's files were already gone, so the check below proves nothing"
    doomed_stack.stop()
    assert not [path.name for path in master_files if path.exists()], "stale files stayed"


def _answer_or_error(client: Client, grandchild: str, seconds: str) -> None:
    # The master dies under these requests: any answer, or none, will do.
    with contextlib.suppress(OSError):
        client.post(f"/api/test/escaping-task/wait/{grandchild}/{seconds}/55", timeout=60)
