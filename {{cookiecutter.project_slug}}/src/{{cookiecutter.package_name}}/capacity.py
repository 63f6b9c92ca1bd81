"""A cap on long work at once, counted across every worker process of a host.

A child task holds what serves its request (a whole sync worker, a gthread
thread) and a whole interpreter's memory for as long as it runs: with no cap,
as many tasks as there are workers leave none for a health check, and a burst
costs a gigabyte. Long work first takes one of `cap` slots; with none free it
is refused at once with `errors.Busy` (503 busy with Retry-After), before any
work, so short requests always find a worker.

A slot is one of `cap` files in a private directory of the host (DATA_DIR,
never shared between hosts), held with a non-blocking `flock` on a descriptor
of its own. The kernel frees it when the descriptor closes, and so when its
holder dies, SIGKILL included: a slot never leaks, and needs no expiry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from collections.abc import Iterator
from pathlib import Path

from . import embedded
from .config import Settings
from .errors import Busy, ConfigError

# A refused request may retry this soon: nothing was started, and any task's end frees a slot.
RETRY_AFTER_SECONDS = 1
# A link planted at a slot's name is refused, not followed. os.open's descriptors are
# never inherited (PEP 446): a task's child holds no slot, so its worker's death frees it.
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
# What a starting worker locks to check that flock works here: not a slot.
PROBE_NAME = "probe"


class Slots:
    """`cap` slots shared by every process that opens the same directory.

    Why not `filelock`, as the embedded backend's locks use: a refusal tries
    every slot, under aiohttp on the event loop, and a flood of refused tasks
    must stay cheap; filelock's try (its registries and fork tracking around
    the same flock) costs many times a bare one.
    """

    def __init__(self, directory: Path, cap: int) -> None:
        self.directory = directory
        self.cap = cap

    @contextlib.contextmanager
    def hold(self, what: str) -> Iterator[None]:
        """Hold a slot for the block; `Busy` at once if all `cap` are taken."""
        fd = self._take()
        if fd is None:
            raise Busy(f"{self.cap} {what} already run on this host", RETRY_AFTER_SECONDS)
        try:
            yield
        finally:
            os.close(fd)  # the only descriptor of its open file: the flock goes with it

    def _take(self) -> int | None:
        """A descriptor holding a free slot, or None. Starting at a random slot
        spreads the holders over the files: while few are held, the first try wins."""
        start = random.randrange(self.cap)  # noqa: S311 (spreading, not a secret)
        for index in range(self.cap):
            fd = os.open(self.directory / f"slot-{(start + index) % self.cap}", _OPEN_FLAGS, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return fd
        return None


def open_slots(settings: Settings) -> Slots:
    """This host's slots in DATA_DIR/slots, checked once at start: a filesystem
    without flock stops the worker with one sentence instead of failing each task.

    The check locks a file of its own, shared, never a slot: a worker starts while
    the others serve (after one was killed, say), and a slot it took to check would
    refuse, for that moment, a task another worker was starting.
    """
    directory = embedded.private_dir(embedded.private_dir(settings.data_dir) / "slots")
    try:
        fd = os.open(directory / PROBE_NAME, _OPEN_FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"DATA_DIR: cannot lock files in {directory}: {exc.strerror}.") from None
    return Slots(directory, settings.long_work_cap)
