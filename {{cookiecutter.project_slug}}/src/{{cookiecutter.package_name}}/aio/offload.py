"""Blocking work moved off the event loop, onto thread pools the app owns.

Why no async SQLite library: aiosqlite runs each connection's statements on
a thread of its own anyway, and the embedded backend must stay one module
shared by every worker class (flock and SQLite calls that are blocking by
nature). So the sync backend runs unchanged on a pool made for it, and the
loop only awaits it. The pools are the app's own, not the loop's default
executor, so that each is sized for its work and named in a thread dump.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# The embedded store: every SQLite statement of a worker runs on one connection,
# one at a time (embedded.Database), so more threads would only queue on its lock;
# a few let a flock try or a file read proceed beside one.
STORE_THREADS = 4
# Export writes: each streams at disk speed; more at once only split the bandwidth,
# and a thread per export in flight would be memory for nothing.
FILE_THREADS = 4


class Offload:
    """`await offload(fn, *args)`: run a blocking call on this pool, not the loop."""

    def __init__(self, threads: int, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., object], *args: object) -> Future[object]:
        """Run a blocking call on this pool without awaiting it (clean-up nobody waits for)."""
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Refuse new work and drop queued work; calls under way finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
