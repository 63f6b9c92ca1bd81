"""Which child process groups each worker has started, so none outlives it.

A task's child runs in a session of its own (so a timeout can kill its whole
group), which also means nothing kills it when its worker dies: a worker
SIGKILLed at the end of the graceful timeout, or by the arbiter's WORKER
TIMEOUT, left a `sleep 60` running for a minute. Each worker therefore notes
every live child group in a private directory, and the gunicorn master, which
outlives its workers, kills what a dead worker left (`gunicorn.conf.py`'s
`child_exit`) and whatever is left when it stops itself (`on_exit`).

One small file per child, named `<worker pid>.<child pid>`, holding the
child's start time from /proc: a pid can be reused once its process is gone,
and the start time tells a reused pid from ours. Only os and signal are
imported here, because the master imports this module (before a gevent
worker patches the standard library).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

# Set by gunicorn.conf.py in the master and inherited by every worker; unset
# (no gunicorn, e.g. unit tests) means nobody is there to clean up: no records.
DIR_VARIABLE = "APP_CHILDREN_DIR"


def make_dir() -> str:
    """A private registry directory for this service's master, made once."""
    existing = os.environ.get(DIR_VARIABLE, "")
    if existing and os.path.isdir(existing):
        return existing
    path = tempfile.mkdtemp(prefix="children-")  # mode 0700: only this user
    os.environ[DIR_VARIABLE] = path
    return path


def _registry() -> Path | None:
    path = os.environ.get(DIR_VARIABLE, "")
    return Path(path) if path else None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]


def note(pid: int) -> None:
    """Record a child group the current worker just started (it leads the group)."""
    registry = _registry()
    started = _start_time(pid)
    if registry is None or started is None:
        return
    with contextlib.suppress(OSError):
        (registry / f"{os.getpid()}.{pid}").write_text(started)


def forget(pid: int) -> None:
    """The child was reaped and its group killed: nothing left to clean up."""
    registry = _registry()
    if registry is not None:
        (registry / f"{os.getpid()}.{pid}").unlink(missing_ok=True)


def kill_left_by(worker_pid: int | None = None) -> int:
    """Kill the groups a dead worker (or, with None, any worker) left; how many."""
    registry = _registry()
    if registry is None:
        return 0
    pattern = "*.*" if worker_pid is None else f"{worker_pid}.*"
    killed = 0
    for record in registry.glob(pattern):
        try:
            pgid = int(record.name.split(".", 1)[1])
            started = record.read_text()
        except (OSError, ValueError):
            continue
        # A group leader that is gone leaves the group's id unusable for new
        # processes while any member lives, so killpg then reaches only ours; a
        # leader alive with another start time is someone else's reused pid.
        now = _start_time(pgid)
        if now is None or now == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
        record.unlink(missing_ok=True)
    return killed


def remove_dir() -> None:
    """At the master's exit: kill whatever is still recorded, then drop the directory."""
    registry = _registry()
    if registry is None:
        return
    kill_left_by(None)
    with contextlib.suppress(OSError):
        for leftover in registry.iterdir():
            leftover.unlink(missing_ok=True)
        registry.rmdir()
