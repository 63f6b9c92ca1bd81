"""Long work has a cap per host: past it, 503 busy at once, and short requests never wait.

A child task holds what serves its request until it ends (a sync worker, a
gthread thread) and costs a whole interpreter. The stack runs three workers of
the project's own class with the default cap, which gunicorn.conf.py derives so
that some of what serves requests always stays free. Each test fills the cap
with sleeping tasks, marked by a sleep length no other process mentions, and
checks what must hold while every one of them still runs (their children are
seen and none has answered): more tasks are refused with 503 busy and
Retry-After, before any child starts; a health check and a counter answer. A
slot is freed when its task ends, and when its worker is SIGKILLed mid-task.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from client import (
    TIMEOUT,
    Client,
    assert_error,
    assert_json,
    describe,
    processes_mentioning,
    run_concurrently,
    unique,
)
from stacks import own_stack_or_skip

# Each filling task's timeout: its child is killed then and it answers. Long enough
# that every check below is made while all of them run, on a loaded machine too.
TASK_SECONDS = 8.0
# Tasks sent past the cap at once: more than a sync stack has workers.
EXTRA_TASKS = 4


@pytest.fixture(scope="module")
def capped_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Three workers of the project's class, with the cap gunicorn.conf.py derives."""
    with own_stack_or_skip(tmp_path_factory, "long-work", {"WEB_CONCURRENCY": "3"}) as started:
        yield started


def marker_seconds() -> str:
    """A sleep length (its repr is in the child's argv) that no process mentions yet."""
    for _ in range(100):
        value = repr(round(40 + random.uniform(0.001, 0.999), 3))
        if not processes_mentioning(value):
            return value
    raise AssertionError("every 40.xxx value is in some process's command line")


def sleep_task(client: Client, marker: str, timeout: float = TASK_SECONDS):
    task = {"task": "sleep", "seconds": float(marker), "timeout": timeout}
    return client.post("/api/tasks/run", json=task, timeout=timeout + TIMEOUT)


class Running:
    """Tasks sent at once from threads of their own, each sleeping `marker` seconds."""

    def __init__(self, client: Client, count: int) -> None:
        self.marker = marker_seconds()
        self.outcomes: list[dict] = [{} for _ in range(count)]
        self.threads = [
            threading.Thread(target=self._send, args=(client, outcome), daemon=True)
            for outcome in self.outcomes
        ]
        for thread in self.threads:
            thread.start()

    def _send(self, client: Client, outcome: dict) -> None:
        try:
            outcome["resp"] = sleep_task(client, self.marker)
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc

    def in_flight(self) -> int:
        return sum(thread.is_alive() for thread in self.threads)

    def children(self) -> list[tuple[int, str]]:
        """The task programs (python childtasks.py): not the reaper each runs under,
        whose command line names them too, nor their grandchildren (sleep)."""
        return [
            p
            for p in processes_mentioning(self.marker)
            if "childtasks" in p[1] and "reaper.py" not in p[1]
        ]

    def reapers(self) -> list[tuple[int, str]]:
        """The reaper of each task, a child of the worker that runs the task."""
        return [p for p in processes_mentioning(self.marker) if "reaper.py" in p[1]]

    def wait_all_running(self) -> None:
        """Every task's child runs and none has answered, within half a task's time."""
        deadline = time.monotonic() + TASK_SECONDS / 2
        while len(self.children()) < len(self.threads):
            answered = [o for o in self.outcomes if o]
            assert not answered, f"a task answered instead of running: {self.describe()}"
            assert time.monotonic() < deadline, (
                f"{len(self.children())} of {len(self.threads)} tasks run after "
                f"{TASK_SECONDS / 2:g} s: {self.describe()}"
            )
            time.sleep(0.05)

    def finish(self) -> list:
        """Each task's answer, once all have ended."""
        for thread in self.threads:
            thread.join(timeout=TASK_SECONDS + TIMEOUT + 5)
        for outcome in self.outcomes:
            assert "error" not in outcome, f"a task failed: {outcome['error']!r}"
        return [outcome["resp"] for outcome in self.outcomes]

    def describe(self) -> str:
        return "; ".join(
            describe(o["resp"]) if "resp" in o else repr(o.get("error", "in flight"))
            for o in self.outcomes
        )


def assert_busy(resp) -> None:
    assert_error(resp, 503, "busy")
    retry_after = resp.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, f"Retry-After {retry_after!r}"


def timed(call):
    started = time.monotonic()
    resp = call()
    return resp, time.monotonic() - started


def timed_out(resp) -> bool:
    """A sleep task's answer: it ran until its timeout killed it."""
    return assert_json(resp, 200)["timed_out"] is True


def all_slots_free(client: Client, cap: int) -> None:
    """`cap` tasks at once all run: no slot is still held."""
    marker = marker_seconds()
    answers = run_concurrently([lambda: sleep_task(client, marker, 1.0)] * cap, threads=cap)
    assert all(timed_out(resp) for resp in answers), [describe(resp) for resp in answers]


def test_past_the_cap_tasks_are_refused_at_once_and_short_requests_answer(capped_stack) -> None:
    client = Client(capped_stack.base_url)
    cap = capped_stack.gunicorn_settings.long_work_cap
    filling = Running(client, cap)
    filling.wait_all_running()

    extra = marker_seconds()
    refused = run_concurrently(
        [lambda: timed(lambda: sleep_task(client, extra))] * EXTRA_TASKS, threads=EXTRA_TASKS
    )
    health, health_took = timed(lambda: client.get("/healthz"))
    counter, counter_took = timed(lambda: client.post(f"/api/counters/{unique('cap')}/incr"))
    in_flight = filling.in_flight()

    for resp, took in refused:
        assert_busy(resp)
        assert took < TASK_SECONDS / 2, f"refused after {took:.1f} s, not at once"
    # Refused before any work: no child was started for them.
    assert not processes_mentioning(extra), "a task past the cap started a child"
    # All of it answered while every task that fills the cap still ran.
    assert in_flight == cap, f"the filling tasks ended first: {filling.describe()}"
    assert_json(health, 200)
    assert_json(counter, 200)
    for took in (health_took, counter_took):
        assert took < TASK_SECONDS / 2, f"a short request waited {took:.1f} s behind the tasks"

    assert all(timed_out(resp) for resp in filling.finish()), filling.describe()
    # Each ended task gave its slot back.
    all_slots_free(client, cap)


def test_a_worker_killed_mid_task_frees_its_slot(capped_stack) -> None:
    client = Client(capped_stack.base_url)
    cap = capped_stack.gunicorn_settings.long_work_cap
    filling = Running(client, cap)
    filling.wait_all_running()
    assert_busy(sleep_task(client, marker_seconds()))

    pid, cmdline = filling.reapers()[0]
    worker = parent_of(pid)
    assert worker in capped_stack.ready_workers(), f"{worker} runs {cmdline}, not a worker"
    os.kill(worker, signal.SIGKILL)
    wait_until_dead(worker)
    # Its slot (or slots, under a class that runs several tasks in a worker) is free
    # at once, while the other workers' tasks still hold theirs.
    admitted = Running(client, 1)
    admitted.wait_all_running()

    assert all(timed_out(resp) for resp in admitted.finish()), admitted.describe()
    answers = filling.finish()
    # The killed worker's tasks cannot be answered (nginx says so in JSON); the others ran.
    killed = [resp for resp in answers if resp.status_code == 502]
    assert killed, f"no task of the killed worker {worker} answered 502: {filling.describe()}"
    assert all(timed_out(resp) for resp in answers if resp.status_code != 502), filling.describe()
    all_slots_free(client, cap)


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 on (the name, field 2, may contain anything)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int:
    return int(stat_fields(pid)[1])  # field 4


def wait_until_dead(pid: int) -> None:
    """Until the process has exited (a zombie or reaped): a SIGKILL lands when the
    killed process next runs, and only its exit closes its descriptors."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if stat_fields(pid)[0] in {"Z", "X"}:  # field 3: the state
                return
        except FileNotFoundError:
            return
        assert time.monotonic() < deadline, f"{pid} still runs {TIMEOUT:g} s after SIGKILL"
        time.sleep(0.02)
