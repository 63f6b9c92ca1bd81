"""The async twin of `processes.run`: the same child, awaited, never blocking the loop.

The same argv, environment and session (`processes.POPEN_OPTIONS`), and the
same end: on timeout the child's whole process group is killed and the child
awaited, and when it ends anything left in its group is killed too, so no
zombie and no orphan remains. asyncio waits for the child with a watcher
that calls waitpid on its pid; `gunicorn.conf.py` resets SIGCHLD in every
worker, so no inherited handler reaps it first (asyncio would then report 255).
"""

from __future__ import annotations

import asyncio
import time

from .. import children
from ..processes import POPEN_OPTIONS, Completed, completed, kill_group


async def run(argv: list[str], timeout: float) -> Completed:
    """Run `argv` (no shell) for at most `timeout` seconds, its whole group killed then."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, **POPEN_OPTIONS)
    children.note(proc.pid)

    async def communicate() -> bytes:
        # As Popen.communicate: all of stdout, then the exit status.
        assert proc.stdout is not None
        out = await proc.stdout.read()
        await proc.wait()
        return out

    finished = asyncio.ensure_future(communicate())
    timed_out = False
    try:
        try:
            out = await asyncio.wait_for(asyncio.shield(finished), timeout)
        except TimeoutError:
            timed_out = True
            kill_group(proc.pid)
            out = await finished
    finally:
        # Whatever the child left in its group goes with it, on every way out (a
        # cancelled request included). The group's id cannot be reused while any
        # member lives, so this reaches ours.
        kill_group(proc.pid)
        if proc.returncode is None:
            finished.cancel()
            await proc.wait()
        children.forget(proc.pid)
    assert proc.returncode is not None
    return completed(proc.returncode, timed_out, out, started)
