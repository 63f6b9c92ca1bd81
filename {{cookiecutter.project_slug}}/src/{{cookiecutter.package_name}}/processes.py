"""Child processes that report their real exit code and end, with all they started,
by their timeout.

A process group does not hold what a task starts: a grandchild that calls
setsid() leaves it, and when its parent exits it goes to init, where no group
kill reaches it; holding the child's stdout, it would hold the answer, and the
worker, past the timeout. So every task runs under `reaper.py`, a child
subreaper that keeps everything the task starts below itself and, when the
program ends or the worker sends SIGTERM (the timeout), kills all of it before
it exits itself. Its exit is the task's end: nothing the task started outlives
its answer. If the reaper cannot finish within END_SECONDS (something killed
it), what is left in its session is killed and its stdout no longer read, so
the answer comes within the timeout and END_SECONDS whatever the task does.

The reaper also ends its task when its worker dies (the kernel tells it: it
watches the thread that started it, which waits for it, or the event loop's).
Each reaper is noted for the gunicorn master (`children`) as well. Under some
worker classes the worker inherits a SIGCHLD handler that reaps children behind
`subprocess`'s back, which then reports 0; `gunicorn.conf.py` resets SIGCHLD in
every worker, so `returncode` can be trusted. Arguments are passed as a list:
no shell ever sees request data.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from . import children, metrics

MAX_OUTPUT = 64 * 1024
# Children get no secrets: only what a small program needs to run.
CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
REAPER = Path(__file__).with_name("reaper.py")
# How long the reaper may take to end a task when asked; it needs milliseconds,
# so past this it is gone (something killed it), and the worker gives up on it.
END_SECONDS = 5.0


@dataclass(frozen=True)
class Completed:
    returncode: int
    timed_out: bool
    stdout: str
    duration_ms: int

    def as_dict(self) -> dict[str, Any]:
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


def reaped(argv: list[str]) -> list[str]:
    """`argv` run under the reaper, which is told this worker's pid. A program that
    cannot be started exits 127, as a shell reports it."""
    return [sys.executable, "-I", "-S", str(REAPER), str(os.getpid()), *argv]


# How every child (the reaper) is started, by both twins: no stdin, stdout
# captured, stderr dropped, our environment only, no inherited descriptors, and a
# new session, which all the task starts shares unless it leaves it, so that what a
# killed reaper left can still be found.
class PopenOptions(TypedDict):
    stdin: int
    stdout: int
    stderr: int
    env: dict[str, str]
    start_new_session: bool
    close_fds: bool


POPEN_OPTIONS: PopenOptions = {
    "stdin": subprocess.DEVNULL,
    "stdout": subprocess.PIPE,
    "stderr": subprocess.DEVNULL,
    "env": CHILD_ENV,
    "start_new_session": True,
    "close_fds": True,
}


def run(argv: list[str], timeout: float) -> Completed:
    """Run `argv` (no shell) for at most `timeout` seconds; all it started ends with it."""
    started = time.monotonic()
    # Our own pipe, not communicate(): one we can stop reading and close, which
    # gevent's communicate, its reader still blocked, refuses.
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(reaped(argv), **(POPEN_OPTIONS | {"stdout": write_end}))
    finally:
        os.close(write_end)
    children.note(proc.pid)
    out = bytearray()
    finished = False
    try:
        finished = ended(proc, read_end, out, started + timeout)
    finally:
        # On every way out (a worker told to quit in mid-task too), the task ends.
        if not finished:
            end(proc, read_end, out)
        os.close(read_end)
        children.forget(proc.pid)
    return completed(proc.returncode, not finished, bytes(out), started)


def ended(proc: subprocess.Popen[bytes], read_end: int, out: bytearray, deadline: float) -> bool:
    """Whether the reaper closed its stdout and exited by `deadline`; what it wrote
    goes to `out` (up to MAX_OUTPUT: the rest is read, so that it can go on, and dropped)."""
    with selectors.DefaultSelector() as selector:
        selector.register(read_end, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return False
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            if len(out) < MAX_OUTPUT:
                out += chunk
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def end(proc: subprocess.Popen[bytes], read_end: int, out: bytearray) -> None:
    """Have the reaper end its task; if it cannot, kill its session and stop reading."""
    # SIGCONT too: a reaper that something stopped could not act on SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGCONT):
        proc.send_signal(sig)
    if not ended(proc, read_end, out, time.monotonic() + END_SECONDS):
        # Gone (killed), it ended nothing: what it left may hold the pipe forever.
        children.kill_session(proc.pid)
        proc.wait()
