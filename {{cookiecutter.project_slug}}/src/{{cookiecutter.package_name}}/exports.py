"""Files made per request, written privately and published atomically.

Two workers writing one fixed path corrupt each other without an error. Here
each export is written in a fresh directory of its own under `work/`, then
the whole directory is renamed into `files/<id>/` in one atomic step, so a
reader sees a complete export or none, and the working area is emptied
whether the request succeeded or failed. nginx serves the published files
(X-Accel-Redirect), so no worker is held by a slow download.

Space is reserved before a byte is written, and atomically across workers: a
free-space check followed by a write lets racing exports each see room that
only one of them gets. The quota is kept in a ledger every worker of the host
shares (SQLite in the store's root, so the store is on a local disk or a
volume of this host, never a network filesystem, as for the embedded
backend): one short transaction checks the total
and records the export's charge, so the lock is held for that arithmetic
only, never for a write or a scan; a create costs the same with 50,000
exports kept as with one, and creates do not wait for each other. The charge
is what the quota means, the export's own bytes (its data and meta.json, in
whole blocks), not the directories that hold them: an ext4 directory keeps
the size its most entries gave it after they are gone.

A charge is given back when its export fails, expires, or its writer dies:
the writer holds a flock on its directory, which the kernel drops with the
process, and the sweep gives back reservations whose lock is free. A rescan
of the store, by one process of the host once the last is ten minutes old (so
at the first start, then every ten minutes), makes the ledger match the disk
after anything else: exports older than the ledger, a crash between two
steps, files removed by hand.

Under gevent a file write never yields to other greenlets: the writes, the
hashing and the scans run on gevent's thread pool (`_off_hub`), so a large
export does not stall the other requests of its worker.

The disk itself: the export's whole size is allocated up front (fallocate)
and the free space checked after, so a full disk, or one that fills anyway,
is 507 with nothing left behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, ParamSpec, TypeVar

from . import metrics
from .embedded import Database
from .errors import Busy, InsufficientStorage, NotFound

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

# The internal nginx location that serves <root>/files/ (deploy/nginx/app.conf.template
# has `location ^~ /_internal/exports/ { alias .../files/; }`; a unit test holds them equal).
ACCEL_PREFIX = "/_internal/exports/"
FILES_DIR = "files"
WORK_DIR = "work"
# The ledger's directory in the store's root: the service's alone (nginx serves only
# files/, and the ledger lists every export's id, which is what lets a client download it).
LEDGER_DIR = "ledger"
LEDGER_NAME = "exports.sqlite3"
# Beside the ledger: the host's writers take turns on it to check and allocate space.
ALLOCATION_LOCK_NAME = "allocation.lock"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
DATA_NAME = "data"
META_NAME = "meta.json"
# Exports are read by the service's user and the web server's group, nobody else:
# nginx runs as the service's user in the local stack, and in containers shares the
# web user's group (compose.yaml's group_add). Set explicitly, whatever the umask.
DIR_MODE = 0o750
FILE_MODE = 0o640
# The working area and the ledger are the service's alone: nginx never reads them.
WORK_MODE = 0o700
# A work directory this old that no reservation names was left by an older version,
# or by a writer killed before it reserved. One that a reservation names goes as soon
# as its writer's lock is free (sweep), whatever its age.
STALE_WORK_SECONDS = 3600.0
# Each process sweeps for expired exports this often (or every max age, if shorter),
# so their bytes go within a minute whether or not requests come.
SWEEP_EVERY_SECONDS = 60.0
# One process of the host rescans the store this often: whatever the ledger missed
# (a crash between two steps, a file removed by hand) is right again within this.
RESCAN_EVERY_SECONDS = 600.0
# Ledger rows a sweep or rescan changes per transaction: each holds the ledger's
# write lock, which every create needs, for a few milliseconds at most.
BATCH = 500
# Charges are in whole blocks of this size, as the disk allocates them.
BLOCK = 4096
# meta.json is allocated with the data (it is well under this), so the quota counts it.
META_RESERVE_BYTES = 4096
# A full disk, or a full disk quota of the service's user: 507, never 500.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL,
    -- When the export was published; NULL while it is being written.
    created REAL
);
CREATE INDEX IF NOT EXISTS exports_created ON exports (created);
CREATE TABLE IF NOT EXISTS total (one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO total VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS exports_added AFTER INSERT ON exports
BEGIN UPDATE total SET bytes = bytes + new.bytes; END;
CREATE TRIGGER IF NOT EXISTS exports_removed AFTER DELETE ON exports
BEGIN UPDATE total SET bytes = bytes - old.bytes; END;
CREATE TRIGGER IF NOT EXISTS exports_resized AFTER UPDATE OF bytes ON exports
BEGIN UPDATE total SET bytes = bytes + new.bytes - old.bytes; END;
CREATE TABLE IF NOT EXISTS rescans (one INTEGER PRIMARY KEY CHECK (one = 1), at REAL NOT NULL);
INSERT OR IGNORE INTO rescans VALUES (1, 0);
"""


class ExportStore:
    """Exports under `root`, within `disk_reserve` free bytes and `quota` bytes in all."""

    def __init__(self, root: Path, max_age: float, *, disk_reserve: int, quota: int) -> None:
        self.root = root
        self.files = root / FILES_DIR
        self.work = root / WORK_DIR
        self.max_age = max_age
        self.disk_reserve = disk_reserve
        self.quota = quota
        self.ledger = Ledger(root / LEDGER_DIR / LEDGER_NAME)

    def _ensure_dirs(self) -> None:
        # The root's mode, when it exists, is the operator's (a volume, a mount point).
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for path, mode in (
            (self.files, DIR_MODE),
            (self.work, WORK_MODE),
            (self.ledger.path.parent, WORK_MODE),
        ):
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
    ) -> dict[str, Any]:
        """Write `chunks` (`size` bytes in all) as a new export; return its metadata.

        InsufficientStorage when it would not fit the disk's reserve or the store's
        quota, or the disk fills anyway; nothing is left behind then either.
        """
        self._ensure_dirs()
        export_id = secrets.token_hex(16)
        workdir = self.work / export_id
        fields = {**extra, "id": export_id, "filename": filename, "content_type": content_type}
        with _refused_when_full(size):
            workdir.mkdir(mode=WORK_MODE)
            try:
                with _writer_lock(workdir):
                    self._reserve(export_id, size)
                    try:
                        meta = _off_hub(self._write, workdir, chunks, size, fields)
                    except BaseException:
                        # The bytes go before their charge: the quota never counts less
                        # than the disk holds.
                        _off_hub(shutil.rmtree, workdir, ignore_errors=True)
                        self.ledger.release([export_id])
                        raise
                    self.ledger.settle(export_id, _charge(meta["size"]), meta["created"])
            finally:
                shutil.rmtree(workdir, ignore_errors=True)  # refused: still empty
        metrics.export_written(meta["size"])
        return meta

    def _reserve(self, export_id: str, size: int) -> None:
        """Record the export's charge in the ledger, or InsufficientStorage.

        The quota: the ledger's one transaction checks the total and adds the
        charge, so two racing exports never both pass it. The disk reserve is
        checked again after the allocation (`_write`), on the filesystem itself,
        the ledger of every process and host that writes to it.
        """
        if self._free() - size < self.disk_reserve:
            raise InsufficientStorage(size)  # plainly too big: never fill the disk to learn it
        charge = _charge(size)
        if not self.ledger.reserve(export_id, charge, self.quota):
            self.sweep(time.time())  # expired exports give their space back first
            if not self.ledger.reserve(export_id, charge, self.quota):
                raise InsufficientStorage(size)

    def _write(
        self, workdir: Path, chunks: Iterable[bytes], size: int, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Allocate, write and publish the export; its metadata. Blocking file work
        only (it runs off gevent's hub): nothing here may take a lock of the hub's."""
        with _allocation_turn(self.ledger.path.parent / ALLOCATION_LOCK_NAME):
            # The host's writers check the free bytes and allocate one at a time, so
            # two racers never both count on the same bytes (and, each seeing the
            # other's allocation, both refuse).
            if self._free() - size - META_RESERVE_BYTES < self.disk_reserve:
                raise InsufficientStorage(size)
            data = _allocate(workdir / DATA_NAME, size)
            try:
                meta_file = _allocate(workdir / META_NAME, META_RESERVE_BYTES)
            except BaseException:
                data.close()
                raise
        with data, meta_file:
            written, digest = _write(data, chunks, size)
            meta = {**fields, "size": written, "sha256": digest, "created": time.time()}
            _fill(meta_file, json.dumps(meta).encode())
        os.chmod(workdir, DIR_MODE)
        # The publish: one rename of the whole directory, atomic on one filesystem.
        os.rename(workdir, self.files / meta["id"])
        return meta

    def _free(self) -> int:
        """Bytes this (unprivileged) service may still write on the store's filesystem."""
        info = os.statvfs(self.work)
        return info.f_bavail * info.f_frsize

    def get(self, export_id: str) -> dict[str, Any]:
        if not ID_PATTERN.fullmatch(export_id):
            raise NotFound("export")
        try:
            meta: dict[str, Any] = json.loads((self.files / export_id / META_NAME).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFound("export") from None
        # Expired is gone at once, on both URLs, whether or not a sweep has run yet.
        if time.time() - float(meta.get("created", 0)) > self.max_age:
            raise NotFound("export")
        return meta

    def accel_path(self, meta: dict[str, Any]) -> str:
        """The internal URI nginx serves; built from server-side data only."""
        return f"{ACCEL_PREFIX}{meta['id']}/{DATA_NAME}"

    def data_path(self, meta: dict[str, Any]) -> Path:
        return self.files / str(meta["id"]) / DATA_NAME

    def sweep_in_background(self) -> threading.Thread:
        """Sweep at once, then on a timer of this process's own (a daemon thread; start
        it in the worker, after the fork, as runtime does), and rescan when it is due."""
        every = min(SWEEP_EVERY_SECONDS, self.max_age)

        def run() -> None:
            while True:
                try:
                    self.sweep(time.time())
                    if self.ledger.claim_rescan(time.time(), RESCAN_EVERY_SECONDS):
                        self.rescan(time.time())
                except Exception:  # the timer outlives any one failure: it is the only one
                    log.exception("the export sweep failed; it runs again in %g s", every)
                time.sleep(every)

        thread = threading.Thread(target=run, name="export-sweeper", daemon=True)
        thread.start()
        return thread

    def sweep(self, now: float) -> None:
        """Remove expired exports, and give back the reservations of dead writers.

        Both come from the ledger's index, never from a scan of the store.
        """
        self._ensure_dirs()
        while expired := self.ledger.published_before(now - self.max_age, BATCH):
            # The bytes go before their charge: the quota never counts less than the
            # disk holds, and a crash in between leaves a row the next sweep finishes.
            _off_hub(_remove, [self.files / export_id for export_id in expired])
            self.ledger.release(expired)
        for export_id in self.ledger.reserved():
            self._settle_if_orphaned(export_id)

    def _settle_if_orphaned(self, export_id: str) -> None:
        """A reservation whose writer died: its charge settled if it was published,
        given back with its directory if not; a living writer's is left alone."""
        for parent in (self.work, self.files):  # the order of the writer's rename
            path = parent / export_id
            held = _off_hub(_lock_held, path)
            if held is None:
                continue  # not here (any more)
            if held:
                return  # its writer is at work
            if parent is self.files:
                found = _off_hub(_published, self.files, [export_id])
                if export_id in found:
                    self.ledger.settle(export_id, *found[export_id])
                return
            _off_hub(shutil.rmtree, path, ignore_errors=True)
            break
        self.ledger.release([export_id])

    def rescan(self, now: float) -> None:
        """Make the ledger match the store, in batches, without holding its lock for
        the scan: published exports it lacks are added, rows whose export is gone
        are removed, and work directories no reservation names are removed once
        stale. Each change is checked against the disk inside its transaction, so a
        create, a publish or an expiry racing the scan is never undone."""
        self._ensure_dirs()
        known = self.ledger.entries()
        # work/ before files/: an export published during the scan is seen at least once.
        working = _off_hub(_modified, self.work)
        listed = _off_hub(os.listdir, self.files)
        published = {name for name in listed if ID_PATTERN.fullmatch(name)}
        missing = [export_id for export_id in published if export_id not in known]
        for start in range(0, len(missing), BATCH):
            found = _off_hub(_published, self.files, missing[start : start + BATCH])
            self.ledger.adopt(found, lambda export_id: (self.files / export_id).is_dir())
        gone = [
            export_id
            for export_id, created in known.items()
            if created is not None and export_id not in published
        ]
        for start in range(0, len(gone), BATCH):
            self.ledger.forget(
                gone[start : start + BATCH], lambda export_id: (self.files / export_id).exists()
            )
        stale = [
            self.work / name
            for name, mtime in working.items()
            if name not in known and now - mtime > STALE_WORK_SECONDS
        ]
        _off_hub(_remove, stale)


class Ledger:
    """Each export's charge against the quota and their total, shared by every process
    of the host (SQLite, like the embedded backend: one host only, never on a network
    filesystem). The total is kept by triggers in the transaction of each change, so
    it is always the sum of the charges and reading it costs the same at any size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, schema=_SCHEMA)

    def reserve(self, export_id: str, charge: int, quota: int) -> bool:
        """Add `charge` for a new export, if the total stays within `quota`."""
        with _ledger_errors(), self._db.transaction() as conn:
            (used,) = conn.execute("SELECT bytes FROM total").fetchone()
            if used + charge > quota:
                return False
            conn.execute("INSERT INTO exports (id, bytes) VALUES (?, ?)", (export_id, charge))
            return True

    def settle(self, export_id: str, charge: int, created: float) -> None:
        """The export is published: its final charge, and the time it expires from."""
        with _ledger_errors():
            self._db.changes(
                "UPDATE exports SET bytes = ?, created = ? WHERE id = ?",
                (charge, created, export_id),
            )

    def release(self, export_ids: list[str]) -> None:
        with _ledger_errors(), self._db.transaction() as conn:
            conn.executemany("DELETE FROM exports WHERE id = ?", [(i,) for i in export_ids])

    def used(self) -> int:
        with _ledger_errors():
            row = self._db.one("SELECT bytes FROM total")
        return row[0] if row else 0

    def published_before(self, moment: float, limit: int) -> list[str]:
        with _ledger_errors():
            rows = self._db.all(
                "SELECT id FROM exports WHERE created < ? ORDER BY created LIMIT ?",
                (moment, limit),
            )
        return [export_id for (export_id,) in rows]

    def reserved(self) -> list[str]:
        """Exports being written (or whose writer died): few, one per export in flight."""
        with _ledger_errors():
            rows = self._db.all("SELECT id FROM exports WHERE created IS NULL")
        return [export_id for (export_id,) in rows]

    def entries(self) -> dict[str, float | None]:
        """Every export's id and creation time (None while reserved)."""
        with _ledger_errors():
            rows = self._db.all("SELECT id, created FROM exports")
        return {export_id: created for export_id, created in rows}

    def adopt(self, found: dict[str, tuple[int, float]], exists: Callable[[str], bool]) -> None:
        """Add published exports the ledger lacks, each only if still on disk once its
        row is in: an expiry removes the files before the row, so it is never undone."""
        with _ledger_errors(), self._db.transaction() as conn:
            for export_id, (charge, created) in found.items():
                added = conn.execute(
                    "INSERT OR IGNORE INTO exports VALUES (?, ?, ?)", (export_id, charge, created)
                ).rowcount
                if added and not exists(export_id):
                    conn.execute("DELETE FROM exports WHERE id = ?", (export_id,))

    def forget(self, export_ids: list[str], exists: Callable[[str], bool]) -> None:
        """Remove the rows of published exports whose files are gone."""
        with _ledger_errors(), self._db.transaction() as conn:
            for export_id in export_ids:
                if not exists(export_id):
                    conn.execute("DELETE FROM exports WHERE id = ?", (export_id,))

    def claim_rescan(self, now: float, every: float) -> bool:
        """Whether this process rescans now: at most one per `every`, host-wide."""
        with _ledger_errors():
            return bool(
                self._db.changes("UPDATE rescans SET at = ? WHERE at <= ?", (now, now - every))
            )


@contextlib.contextmanager
def _ledger_errors() -> Iterator[None]:
    """The ledger's disk full is 507; its lock busy past the wait is 503 busy (a
    retry is safe: the transaction was rolled back)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
            raise InsufficientStorage(0) from exc
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise Busy("export space") from exc
        raise


def _off_hub(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking file work where it stalls no other request.

    A file write, a hash or a directory scan never yields to other greenlets: under
    gevent's monkey patching (gunicorn's gevent worker) one large export would stop
    every request of its worker, so there it runs on the hub's thread pool. Elsewhere
    the caller has a thread of its own already (sync, gthread, aiohttp's files pool).
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return fn(*args, **kwargs)
    import gevent  # only where gevent patched the process, so it is installed

    return gevent.get_hub().threadpool.apply(fn, args, kwargs)


@contextlib.contextmanager
def _writer_lock(workdir: Path) -> Iterator[None]:
    """Hold `workdir`'s flock while its export is reserved, written and published.

    The kernel drops the lock with its process: the sweep takes a free lock on a
    reservation's directory as proof that its writer died. Taken before the
    reservation exists, so no reservation's directory is ever free while its
    writer lives; the lock follows the directory through the publish's rename.
    """
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh directory: never waits
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _allocation_turn(lock_path: Path) -> Iterator[None]:
    """This host's turn to check the free space and allocate (a blocking flock:
    called off gevent's hub and off aiohttp's loop, as every file write here is)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_held(path: Path) -> bool | None:
    """Whether a writer holds `path`'s lock; None if there is no such directory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        # Free, but perhaps only because its writer published it (renamed it away)
        # and finished between the open and the lock: free counts only where it is.
        opened = os.fstat(fd)
        try:
            here = os.lstat(path)
        except FileNotFoundError:
            return None
        return False if (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino) else None
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken


def _charge(size: int) -> int:
    """An export's charge against the quota: its data in whole blocks, and meta.json's."""
    return -(-size // BLOCK) * BLOCK + META_RESERVE_BYTES


def _published(files: Path, export_ids: list[str]) -> dict[str, tuple[int, float]]:
    """(charge, creation time) of the published exports among `export_ids`, read from
    their files; those removed meanwhile are left out."""
    found = {}
    for export_id in export_ids:
        path = files / export_id
        try:
            size = os.lstat(path / DATA_NAME).st_size
            try:
                created = float(json.loads((path / META_NAME).read_bytes())["created"])
            except (ValueError, KeyError, TypeError):
                created = os.lstat(path).st_mtime  # unreadable metadata: expires by age
        except (FileNotFoundError, NotADirectoryError):
            continue
        found[export_id] = (_charge(size), created)
    return found


def _modified(directory: Path) -> dict[str, float]:
    """The directory's entries and their modification times; one removed during the
    listing is left out."""
    entries = {}
    with os.scandir(directory) as scan:
        for entry in scan:
            with contextlib.suppress(FileNotFoundError):
                entries[entry.name] = entry.stat(follow_symlinks=False).st_mtime
    return entries


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


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
