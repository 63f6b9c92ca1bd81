"""Child processes that report their real exit code and die with their timeout.

Under some worker classes the worker inherits a SIGCHLD handler that reaps
children behind `subprocess`'s back, which then reports 0 whatever happened;
`gunicorn.conf.py` resets SIGCHLD in every worker, so the code here can trust
`returncode`. Each child gets a session of its own, so a timeout kills the
whole process group, grandchildren included, and when the child ends the
group goes too, so nothing it started in the background lingers. The group is
also noted for the gunicorn master (`children`), which kills it if the worker
dies first. Arguments are passed as a list: no shell ever sees request data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass

from . import children, metrics

MAX_OUTPUT = 64 * 1024
# Children get no secrets: only what a small program needs to run.
CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


@dataclass(frozen=True)
class Completed:
    returncode: int
    timed_out: bool
    stdout: str
    duration_ms: int

    def as_dict(self) -> dict:
        return asdict(self)


def completed(returncode: int, timed_out: bool, out: bytes, started: float) -> Completed:
    """The answer for a finished child, for the sync and the async twin alike
    (counted in the metrics here, for both)."""
    metrics.child_task(returncode, timed_out)
    return Completed(
        returncode=returncode,
        timed_out=timed_out,
        stdout=out[:MAX_OUTPUT].decode("utf-8", errors="replace"),
        duration_ms=int((time.monotonic() - started) * 1000),
    )


# How every child is started, by both twins: no stdin, stdout captured, stderr
# dropped, our environment only, no inherited descriptors, and a new session, which
# makes the child a group leader, so killpg reaches everything it starts.
POPEN_OPTIONS = {
    "stdin": subprocess.DEVNULL,
    "stdout": subprocess.PIPE,
    "stderr": subprocess.DEVNULL,
    "env": CHILD_ENV,
    "start_new_session": True,
    "close_fds": True,
}


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run(argv: list[str], timeout: float) -> Completed:
    """Run `argv` (no shell) for at most `timeout` seconds, its whole group killed then."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, **POPEN_OPTIONS)
    children.note(proc.pid)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid)
        out, _ = proc.communicate()
    finally:
        # Whatever the child left in its group (a background grandchild) goes with it.
        # The group's id cannot be reused while any member lives, so this reaches ours.
        kill_group(proc.pid)
        if proc.poll() is None:
            proc.wait()
        children.forget(proc.pid)
    return completed(proc.returncode, timed_out, out, started)
