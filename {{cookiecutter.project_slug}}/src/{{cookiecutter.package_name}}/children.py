"""Which tasks each worker has started, so none outlives it, and a worker that
does not outlive its master.

A task's child (`reaper.py`, which runs the task's program) leads a session of
its own, so nothing kills it with its worker's process group. It ends its task
itself when its worker dies (the kernel sends it SIGTERM); as well, each worker
notes every live task in a private directory, ends them when it leaves (the
`worker_int` and `worker_exit` hooks in `gunicorn.conf.py`), and the gunicorn
master, which outlives its workers, ends what a dead worker left (`child_exit`)
and whatever is left when it stops itself (`on_exit`).

One small file per task, named `<worker pid>.<reaper pid>`, holding the
reaper's start time (psutil's `create_time`): a pid can be reused once its
process is gone, and the start time tells a reused pid from ours. The master
imports this module, before a gevent worker patches the standard library: psutil
loads only modules gunicorn's master has loaded already (threading, socket) or
that gevent patches in place (subprocess), never ssl.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import tempfile
from pathlib import Path

import psutil

# Set by gunicorn.conf.py in the master and inherited by every worker; unset
# (no gunicorn, e.g. unit tests) means nobody is there to clean up: no records.
DIR_VARIABLE = "APP_CHILDREN_DIR"
PR_SET_PDEATHSIG = 1
# A process in these states runs nothing more: killing it changes nothing.
_ENDED = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})


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


def _stat(pid: int) -> tuple[bool, str] | None:
    """Whether the process has ended (a zombie), and its start time; None if gone."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return process.status() == psutil.STATUS_ZOMBIE, repr(process.create_time())
    except psutil.NoSuchProcess:
        return None


def kill_session(sid: int) -> int:
    """Kill what is left in a task's session once its reaper is gone; how many."""
    # A session's id is given to no new process while one is in it, so all found
    # are the task's. The orphans of those killed stay in it (unless they left it
    # too, which only the reaper could have followed), so look again until none is
    # alive; a few looks, never an endless one.
    killed = 0
    for _ in range(10):
        found = []
        for process in psutil.process_iter(["status"]):
            if process.info["status"] in _ENDED:
                continue
            with contextlib.suppress(OSError):  # gone meanwhile, or another user's
                if os.getsid(process.pid) == sid:
                    found.append(process.pid)
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def note(pid: int) -> None:
    """Record a task the current worker just started (its reaper leads its session)."""
    registry = _registry()
    stat = _stat(pid)
    if registry is None or stat is None:
        return
    with contextlib.suppress(OSError):
        (registry / f"{os.getpid()}.{pid}").write_text(stat[1])


def forget(pid: int) -> None:
    """The task ended and its reaper was reaped: nothing left to clean up."""
    registry = _registry()
    if registry is not None:
        (registry / f"{os.getpid()}.{pid}").unlink(missing_ok=True)


def end_tasks(worker_pid: int | None = None) -> int:
    """End the tasks a worker (or, with None, any worker) started; how many were left."""
    registry = _registry()
    if registry is None:
        return 0
    pattern = "*.*" if worker_pid is None else f"{worker_pid}.*"
    ended = 0
    for record in registry.glob(pattern):
        try:
            pid = int(record.name.split(".", 1)[1])
            started = record.read_text()
        except (OSError, ValueError):
            continue
        reaper = _stat(pid)
        if reaper is None or reaper == (True, started):
            # It was killed, or it ended its task: what its session holds goes.
            if kill_session(pid):
                ended += 1
        elif reaper[1] == started:
            # Asked, the reaper kills all the task started, escaped or not, and exits;
            # killing it instead would hand what escaped its session to init.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                ended += 1
        # Else the pid is someone else's now: ours is long gone, and its session too.
        record.unlink(missing_ok=True)
    return ended


def quit_with_master(master_pid: int) -> None:
    """Have the kernel send this worker SIGQUIT, gunicorn's quick stop, when its master dies.

    A worker notices a dead master only between requests (a sync worker after its
    task, a minute later; idle, after up to half its timeout), serving on with no one
    to bound it, and holding the listening socket a new master needs. The signal
    comes when the master's thread that forked the worker ends: gunicorn forks from
    its main thread only. Linux only, as the reaper: elsewhere (`make run` off Linux)
    gunicorn's own look at its parent is all there is.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    if os.getppid() != master_pid:
        # It died before the kernel was told; nothing is served yet.
        raise SystemExit(0)


def remove_dir() -> None:
    """At the master's exit: end whatever is still recorded, then drop the directory."""
    registry = _registry()
    if registry is None:
        return
    end_tasks(None)
    with contextlib.suppress(OSError):
        for leftover in registry.iterdir():
            leftover.unlink(missing_ok=True)
        registry.rmdir()
