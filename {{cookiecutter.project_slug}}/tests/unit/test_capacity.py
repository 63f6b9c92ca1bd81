"""Slots for long work: `cap` at once across real processes, freed when a holder dies."""

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from {{ cookiecutter.package_name }} import capacity, config
from {{ cookiecutter.package_name }}.errors import Busy


def held(slots, count):
    """Enter `count` holds; the stack that releases them."""
    stack = contextlib.ExitStack()
    for _ in range(count):
        stack.enter_context(slots.hold("tasks"))
    return stack


def test_past_the_cap_a_hold_is_busy_with_retry_after(tmp_path):
    slots = capacity.Slots(tmp_path, 3)
    with held(slots, 3), pytest.raises(Busy) as refused, slots.hold("tasks"):
        pass
    assert refused.value.retry_after == capacity.RETRY_AFTER_SECONDS
    assert "3 tasks" in str(refused.value)
    # Every slot came back.
    with held(slots, 3):
        pass


def test_a_slot_comes_back_when_its_block_raises(tmp_path):
    slots = capacity.Slots(tmp_path, 1)
    with pytest.raises(RuntimeError), slots.hold("tasks"):
        raise RuntimeError("the task failed")
    with slots.hold("tasks"):
        pass


def _hold_until_killed(directory, ready):
    with capacity.Slots(directory, 2).hold("tasks"):
        ready.set()
        signal.pause()


def test_other_processes_share_the_cap_and_a_killed_holder_frees_its_slot(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    holder = context.Process(target=_hold_until_killed, args=(tmp_path, ready))
    holder.start()
    try:
        assert ready.wait(30), "the other process never took its slot"
        slots = capacity.Slots(tmp_path, 2)
        # One slot is the other process's: one is left here.
        with slots.hold("tasks"), pytest.raises(Busy), slots.hold("tasks"):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
    # SIGKILL runs no clean-up: the kernel dropped its flock.
    with held(slots, 2):
        pass


def test_a_child_process_never_inherits_a_slot(tmp_path):
    slots = capacity.Slots(tmp_path, 1)
    with slots.hold("tasks"):
        # Started inside, as a task's child is, and told to keep every inheritable fd.
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        child = subprocess.Popen(sleeper, close_fds=False)
    try:
        # The child shares the slot's descriptor from its fork until its exec closes
        # it; an inherited one would keep the slot for the child's whole minute.
        deadline = time.monotonic() + 5
        while True:
            try:
                with slots.hold("tasks"):
                    break
            except Busy:
                assert time.monotonic() < deadline, "the child kept the slot"
                time.sleep(0.01)
        assert child.poll() is None, "the child ended, so this proves nothing"
    finally:
        child.kill()
        child.wait()


def test_a_starting_worker_checks_flock_without_taking_a_slot(tmp_path):
    """A worker starts while others serve: its check must not refuse their tasks."""
    settings = config.load({"DATA_DIR": str(tmp_path), "LONG_WORK_CAP": "2"})
    slots = capacity.open_slots(settings)
    assert sorted(path.name for path in slots.directory.iterdir()) == [capacity.PROBE_NAME]
    with held(slots, 1):
        # One slot free: while a worker starts, a task still finds it.
        capacity.open_slots(settings)
        with slots.hold("tasks"):
            pass
