"""The async twin of `processes.run`: the same task, awaited, never blocking the loop.

The same reaper, argv, environment and session (`processes.reaped`,
`processes.POPEN_OPTIONS`), and the same end: on timeout, and on every other way
out (a cancelled request too), the reaper is asked to end the task and is
awaited, and if it cannot within END_SECONDS what is left in its session is
killed and its stdout closed. A protocol of our own, not a `Process`, so that
the exit is known apart from the pipe (`Process.wait()` also waits for the pipe,
which what escaped a killed reaper may hold forever). The reaper is waited for
with a watcher that calls waitpid on its pid, and nothing else may reap it first
(asyncio would then report 255): `gunicorn.conf.py` resets SIGCHLD in every
worker, so no inherited handler does, and `signal_unreaped` signals it without
the transport's `send_signal`, whose `Popen.poll` does (CPython gh-87744, fixed
in 3.13).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from .. import children
from ..processes import (
    END_SECONDS,
    MAX_OUTPUT,
    POPEN_OPTIONS,
    Completed,
    completed,
    reaped,
)

# Endings still under way after their run was cancelled, so none is collected in mid-way.
_ENDING: set[asyncio.Task[None]] = set()


class Task(asyncio.SubprocessProtocol):
    """The reaper's stdout as it comes, and when it exited and its pipe closed."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.out = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if len(self.out) < MAX_OUTPUT:  # the rest is dropped, as by the sync twin
            self.out += data

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    async def finished(self, timeout: float) -> bool:
        """Whether the reaper exited and its stdout closed within `timeout` seconds."""
        _, pending = await asyncio.wait((self.exited, self.closed), timeout=timeout)
        return not pending


async def run(argv: list[str], timeout: float) -> Completed:
    """Run `argv` (no shell) for at most `timeout` seconds; all it started ends with it."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    transport, task = await loop.subprocess_exec(Task, *reaped(argv), **POPEN_OPTIONS)
    children.note(transport.get_pid())
    timed_out = False
    try:
        timed_out = not await task.finished(timeout)
    finally:
        # Shielded: a second cancel must not leave the task running.
        ending = asyncio.ensure_future(end(transport, task))
        _ENDING.add(ending)
        ending.add_done_callback(_ENDING.discard)
        await asyncio.shield(ending)
    returncode = transport.get_returncode()
    assert returncode is not None
    return completed(returncode, timed_out, bytes(task.out), started)


async def end(transport: asyncio.SubprocessTransport, task: Task) -> None:
    """Have the reaper end its task (if it runs yet); kill its session past END_SECONDS."""
    pid = transport.get_pid()
    try:
        if not await task.finished(0):
            # SIGCONT too: a reaper that something stopped could not act on SIGTERM.
            signal_unreaped(pid, signal.SIGTERM)
            signal_unreaped(pid, signal.SIGCONT)
            if not await task.finished(END_SECONDS):
                # Gone (killed), it ended nothing: what it left may hold the pipe forever.
                children.kill_session(pid)
                await task.exited
    finally:
        transport.close()
        children.forget(pid)


def signal_unreaped(pid: int, sig: int) -> None:
    """Send `sig` to the reaper while it runs, leaving its reaping to the watcher."""
    try:
        # Looked at, not reaped (WNOWAIT). Unreaped, the pid is still the reaper's.
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return  # it exited: nothing left to ask
    except ChildProcessError:
        return  # reaped (its exit not yet reported): the pid may be another's by now
    # It may exit, and be reaped, between the look and the kill, the window
    # Popen.send_signal leaves too; the pid is not given out again that soon.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
