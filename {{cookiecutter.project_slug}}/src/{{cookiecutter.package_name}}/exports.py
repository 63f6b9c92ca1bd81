"""Files made per request, written privately and published atomically.

Two workers writing one fixed path corrupt each other without an error. Here
each export is written in a fresh directory of its own under `work/`, then
the whole directory is renamed into `files/<id>/` in one atomic step, so a
reader sees a complete export or none, and the working area is emptied
whether the request succeeded or failed. nginx serves the published files
(X-Accel-Redirect), so no worker is held by a slow download.

Space is reserved before a byte is written, and atomically across workers: a
free-space check followed by a write lets racing exports each see room that
only one of them gets, and the others fail half-way on a full disk. The
export's whole size is allocated up front (fallocate), so the filesystem
itself is the ledger every worker and host shares; a full disk, a full quota
or a disk that fills anyway is 507 with nothing left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from . import metrics
from .errors import InsufficientStorage, LockTimeout, NotFound

log = logging.getLogger(__name__)

# The internal nginx location that serves <root>/files/ (deploy/nginx/app.conf.template
# has `location ^~ /_internal/exports/ { alias .../files/; }`; a unit test holds them equal).
ACCEL_PREFIX = "/_internal/exports/"
FILES_DIR = "files"
WORK_DIR = "work"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
DATA_NAME = "data"
META_NAME = "meta.json"
# The lock every reservation takes, in the store's root (nginx serves only files/).
LEDGER_NAME = "space.lock"
# Exports are read by the service's user and the web server's group, nobody else:
# nginx runs as the service's user in the local stack, and in containers shares the
# web user's group (compose.yaml's group_add). Set explicitly, whatever the umask.
DIR_MODE = 0o750
FILE_MODE = 0o640
# The working area and the lock are the service's alone: nginx never reads them.
WORK_MODE = 0o700
LEDGER_MODE = 0o600
# A work directory this old belongs to a worker that was killed mid-export.
STALE_WORK_SECONDS = 3600.0
# Each process sweeps for expired exports this often (or every max age, if shorter),
# so their bytes go within a minute whether or not requests come.
SWEEP_EVERY_SECONDS = 60.0
# A reservation is a scan of the store and two allocations; a wait this long means a
# stuck filesystem, and the request is refused instead of hanging.
LEDGER_WAIT_SECONDS = 30.0
# meta.json is allocated with the data (it is well under this), so the quota counts it.
META_RESERVE_BYTES = 4096
# A full disk, or a full disk quota of the service's user: 507, never 500.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class ExportStore:
    """Exports under `root`, within `disk_reserve` free bytes and `quota` bytes in all."""

    def __init__(self, root: Path, max_age: float, *, disk_reserve: int, quota: int) -> None:
        self.root = root
        self.files = root / FILES_DIR
        self.work = root / WORK_DIR
        self.max_age = max_age
        self.disk_reserve = disk_reserve
        self.quota = quota
        self._next_sweep = 0.0

    def _ensure_dirs(self) -> None:
        # The root's mode, when it exists, is the operator's (a volume, a mount point).
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for path, mode in ((self.files, DIR_MODE), (self.work, WORK_MODE)):
            path.mkdir(mode=mode, exist_ok=True)
            _restrict(path, mode)

    def create(
        self,
        chunks: Iterable[bytes],
        *,
        size: int,
        filename: str,
        content_type: str = "application/octet-stream",
        **extra: object,
    ) -> dict:
        """Write `chunks` (`size` bytes in all) as a new export; return its metadata.

        InsufficientStorage when it would not fit the disk's reserve or the store's
        quota, or the disk fills anyway; nothing is left behind then either.
        """
        self._ensure_dirs()
        self.maybe_sweep()
        export_id = secrets.token_hex(16)
        with _refused_when_full(size):
            workdir = Path(tempfile.mkdtemp(prefix="export-", dir=self.work))
            try:
                data, meta_file = self._reserve(workdir, size)
                with data, meta_file:
                    written, digest = _write(data, chunks, size)
                    meta = {
                        **extra,
                        "id": export_id,
                        "size": written,
                        "sha256": digest,
                        "filename": filename,
                        "content_type": content_type,
                        "created": time.time(),
                    }
                    _fill(meta_file, json.dumps(meta).encode())
                os.chmod(workdir, DIR_MODE)
                # The publish: one rename of the whole directory, atomic on one filesystem.
                os.rename(workdir, self.files / export_id)
                metrics.export_written(written)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        return meta

    def _reserve(self, workdir: Path, size: int) -> tuple[BinaryIO, BinaryIO]:
        """Allocate the export's data and meta.json in `workdir`, or InsufficientStorage.

        The disk reserve: the blocks are allocated first and the free space checked
        after, so the filesystem itself is the ledger of every worker and host that
        writes to it; two racing exports can at worst both be refused, never both
        admitted past the reserve. The quota: under an exclusive lock, the space the
        store holds is summed and the new blocks are allocated before the lock is
        released, so the next reserver counts them. This assumes files/ and work/ are
        on one filesystem (the publish's rename needs that too) on which flock works
        for every process that shares the store: a local disk or a Docker volume (a
        network filesystem only where its flock is enforced across hosts).
        """
        if self._free() - size < self.disk_reserve:
            raise InsufficientStorage(size)  # plainly too big: never fill the disk to learn it
        ledger = FileLock(
            self.root / LEDGER_NAME,
            mode=LEDGER_MODE,
            thread_local=False,
            is_singleton=False,
            # A soft (existence) lock would stay behind if a holder died.
            fallback_to_soft=False,
        )
        try:
            ledger.acquire(timeout=LEDGER_WAIT_SECONDS)
        except Timeout:
            raise LockTimeout("export space", LEDGER_WAIT_SECONDS) from None
        try:
            used = self._used()
            if used + size > self.quota:
                self.sweep(time.time())  # expired exports give their space back first
                used = self._used()
                if used + size > self.quota:
                    raise InsufficientStorage(size)
            opened: list[BinaryIO] = []
            try:
                opened.append(_allocate(workdir / DATA_NAME, size))
                opened.append(_allocate(workdir / META_NAME, META_RESERVE_BYTES))
                taken = sum(os.fstat(f.fileno()).st_blocks * 512 for f in opened)
                if used + taken > self.quota or self._free() < self.disk_reserve:
                    raise InsufficientStorage(size)
            except BaseException:
                for f in opened:
                    f.close()
                raise
            return opened[0], opened[1]
        finally:
            ledger.release()

    def _free(self) -> int:
        """Bytes this (unprivileged) service may still write on the store's filesystem."""
        info = os.statvfs(self.work)
        return info.f_bavail * info.f_frsize

    def _used(self) -> int:
        """Bytes the store takes on disk. work/ is scanned before files/: an export
        published (renamed) during the scan is counted twice, never missed. The scan
        grows with the number of exports kept: fine for thousands, not for millions."""
        return _allocated(self.work) + _allocated(self.files)

    def get(self, export_id: str) -> dict:
        if not ID_PATTERN.fullmatch(export_id):
            raise NotFound("export")
        try:
            meta = json.loads((self.files / export_id / META_NAME).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFound("export") from None
        # Expired is gone at once, on both URLs, whether or not a sweep has run yet.
        if time.time() - float(meta.get("created", 0)) > self.max_age:
            raise NotFound("export")
        return meta

    def accel_path(self, meta: dict) -> str:
        """The internal URI nginx serves; built from server-side data only."""
        return f"{ACCEL_PREFIX}{meta['id']}/{DATA_NAME}"

    def data_path(self, meta: dict) -> Path:
        return self.files / meta["id"] / DATA_NAME

    def sweep_in_background(self) -> threading.Thread:
        """Sweep on a timer of this process's own (a daemon thread; start it in the
        worker, after the fork, as runtime does)."""
        every = min(SWEEP_EVERY_SECONDS, self.max_age)

        def run() -> None:
            while True:
                time.sleep(every)
                try:
                    self.sweep(time.time())
                except OSError:
                    log.exception("the export sweep failed; it runs again in %g s", every)

        thread = threading.Thread(target=run, name="export-sweeper", daemon=True)
        thread.start()
        return thread

    def maybe_sweep(self) -> None:
        """Sweep at most once a minute per process: cheap enough to run on create."""
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_SECONDS
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Remove expired exports and work directories abandoned by killed workers."""
        for parent, age in ((self.files, self.max_age), (self.work, STALE_WORK_SECONDS)):
            try:
                entries = list(os.scandir(parent))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    expired = now - entry.stat(follow_symlinks=False).st_mtime > age
                except FileNotFoundError:
                    continue
                if expired:
                    shutil.rmtree(entry.path, ignore_errors=True)


@contextlib.contextmanager
def _refused_when_full(size: int) -> Iterator[None]:
    """ENOSPC or EDQUOT anywhere in an export (a disk that filled anyway) is a 507."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        raise InsufficientStorage(size) from exc


def _restrict(path: Path, mode: int) -> None:
    """chmod a directory the store made, so an older, looser mode does not linger."""
    with contextlib.suppress(PermissionError):  # not ours: its owner chose its mode
        if stat.S_IMODE(os.stat(path).st_mode) != mode:
            os.chmod(path, mode)


def _allocate(path: Path, size: int) -> BinaryIO:
    """A new file at `path` with `size` bytes allocated on disk (ENOSPC if they are not
    there), open for writing from its start; nothing truncates the allocation away."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask took away, the group reads it
        if size > 0:
            os.posix_fallocate(fd, 0, size)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _write(out: BinaryIO, chunks: Iterable[bytes], size: int) -> tuple[int, str]:
    """Write `chunks` into the allocated file; more than `size` bytes is a caller's bug."""
    digest = hashlib.sha256()
    written = 0
    for chunk in chunks:
        written += len(chunk)
        if written > size:
            raise ValueError(f"an export's chunks came to more than its {size} bytes")
        out.write(chunk)
        digest.update(chunk)
    if written < size:
        out.truncate(written)  # the unused rest of the allocation goes back to the disk
    out.flush()
    os.fsync(out.fileno())
    return written, digest.hexdigest()


def _fill(out: BinaryIO, content: bytes) -> None:
    """Write `content` into an allocated file and cut it to exactly that length."""
    out.write(content)
    out.truncate(len(content))
    out.flush()


def _allocated(path: Path | str) -> int:
    """Bytes allocated to `path` and everything under it; what vanishes meanwhile is 0."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    total = info.st_blocks * 512
    if stat.S_ISDIR(info.st_mode):
        try:
            with os.scandir(path) as entries:
                children = [entry.path for entry in entries]
        except (FileNotFoundError, NotADirectoryError):
            return total
        total += sum(_allocated(child) for child in children)
    return total
