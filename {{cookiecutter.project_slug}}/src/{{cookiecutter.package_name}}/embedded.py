"""The embedded backend: shared state and locks for one host, with no Redis.

Every gunicorn worker on the host opens the same SQLite database (WAL mode,
single-statement atomic upserts, a busy timeout) and the same lock files
(`flock`, released by the kernel if the holder dies). That is correct for
several processes on ONE machine only: never put the directory on a network
filesystem, and when the service outgrows one host, set REDIS_URL.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import ConfigError, IdempotencyKeyReused, LockLost, LockTimeout, unavailable_on
from .locks import RECORD_TTL_SECONDS, Holding, Lease, check_ttl, new_token

# Waiting this long on a write lock is normal under load; past it, answer 503.
BUSY_TIMEOUT_MS = 5000
# "database is locked" and friends: the store did not answer in time.
SQLITE_UNAVAILABLE = (sqlite3.OperationalError,)
# Lease rows past their record TTL are deleted this often at most (and at least
# once per record TTL).
SWEEP_EVERY_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, token TEXT, fence INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lease_expiry ON leases (expires_at);
CREATE TABLE IF NOT EXISTS fenced (
    name TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (name, key)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, amount INTEGER NOT NULL,
    value INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at);
"""


def private_dir(path: Path) -> Path:
    """Create (or check) a directory only this user can enter; never a symlink."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file where the directory belongs: refused just below
    except OSError as exc:
        raise ConfigError(f"DATA_DIR: cannot create {path}: {exc.strerror}.") from None
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"DATA_DIR: {path} must be a real directory, not a link or a file.")
    if info.st_uid != os.getuid():
        raise ConfigError(f"DATA_DIR: {path} belongs to another user.")
    os.chmod(path, 0o700)
    return path


def open_database(directory: Path) -> Database:
    """The state database in a private directory, in WAL mode, checked at start."""
    db = Database(private_dir(directory) / "state.sqlite3")
    try:
        db.one("SELECT 1")
    except sqlite3.Error as exc:
        raise ConfigError(f"DATA_DIR: cannot open {db.path}: {exc}.") from None
    return db


class Database:
    """One SQLite connection per process, opened after the fork.

    One connection guarded by a lock, not one per thread: under gevent a
    thread-local would open a connection per greenlet. Every statement is
    short and in autocommit, so the lock is held for microseconds. `schema`
    is run at each open (idempotent: CREATE ... IF NOT EXISTS).
    """

    def __init__(self, path: Path, schema: str = _SCHEMA) -> None:
        self.path = path
        self.schema = schema
        self._guard = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Switching to WAL takes an exclusive lock that the busy timeout does not
            # wait for: workers opening a fresh database together fail with "database
            # is locked". One process at a time sets it up (the mode is stored in the
            # file, so later opens only read it); the flock is released by the kernel
            # if a process dies holding it.
            with FileLock(self.path.with_name(self.path.name + ".setup-lock")):
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(self.schema)
            # With WAL, NORMAL loses at most the last commits on power loss, never integrity.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        with self._guard:
            row: tuple[Any, ...] | None = self._connect().execute(sql, params).fetchone()
            return row

    def returning(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
        """The row of a statement that always yields one (an upsert's RETURNING)."""
        row = self.one(sql, params)
        if row is None:
            raise AssertionError(f"no row from {sql!r}")
        return row

    def all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._guard:
            return self._connect().execute(sql, params).fetchall()

    def changes(self, sql: str, params: tuple[object, ...] = ()) -> int:
        with self._guard:
            return self._connect().execute(sql, params).rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, for a change no single statement can make.

        IMMEDIATE takes the write lock first, within the busy timeout: a deferred
        transaction that later writes gets "database is locked" at once instead.
        """
        with self._guard:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise


@unavailable_on(*SQLITE_UNAVAILABLE)
class SqliteState:
    """The same interface as `state.RedisState`, on the embedded database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def incr(self, name: str, by: int = 1) -> int:
        row = self._db.returning(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value RETURNING value",
            (name, by),
        )
        return int(row[0])

    def incr_once(self, name: str, by: int, key: str, ttl: float) -> int:
        """`incr` and the key's record in one transaction (see `state.State`)."""
        now = time.time()
        with self._db.transaction() as conn:
            # Expired keys are forgotten first (cheap: the index holds them in order).
            conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
            first = conn.execute(
                "SELECT name, amount, value FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            if first is None:
                (value,) = conn.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                    "DO UPDATE SET value = value + excluded.value RETURNING value",
                    (name, by),
                ).fetchone()
                conn.execute(
                    "INSERT INTO idempotency (key, name, amount, value, expires_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, name, by, value, now + ttl),
                )
                return int(value)
        if (first[0], first[1]) != (name, by):
            raise IdempotencyKeyReused()
        return int(first[2])

    def get_counter(self, name: str) -> int:
        row = self._db.one("SELECT value FROM counters WHERE name = ?", (name,))
        return int(row[0]) if row else 0

    def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        expires = time.time() + ttl if ttl is not None else None
        self._db.changes(
            "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires_at = excluded.expires_at",
            (key, value, expires),
        )

    def set_if_absent(self, key: str, value: bytes | str, ttl: float | None = None) -> bool:
        now = time.time()
        expires = now + ttl if ttl is not None else None
        # An expired row counts as absent: it is replaced, in the same statement.
        return bool(
            self._db.changes(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value, expires_at = excluded.expires_at "
                "WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?",
                (key, value, expires, now),
            )
        )

    def get(self, key: str) -> bytes | None:
        row = self._db.one(
            "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, time.time()),
        )
        if row is None:
            return None
        return row[0] if isinstance(row[0], bytes) else str(row[0]).encode()

    def ping(self) -> None:
        self._db.one("SELECT 1")


class _Removed(Exception):
    """The flock was won on a lock file its last holder had already removed."""


def _still_named(path: Path, fd: int) -> None:
    """filelock's `on_acquired` check: the file just locked is the one `path` names,
    not one its last holder removed while this caller waited on it."""
    held = os.fstat(fd)
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        raise _Removed() from None
    if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
        raise _Removed()


@unavailable_on(*SQLITE_UNAVAILABLE)
class FileLocks(Holding):
    """The same interface as `locks.RedisLocks`, with one `flock`ed file per held name.

    `filelock` does the exclusion (flock, O_NOFOLLOW, a fresh descriptor per
    acquisition, so nothing is shared across fork), and the kernel frees a
    dead holder's lock at once. The lease (token, fence, expiry) is a row in
    SQLite, written while the flock is held: past its TTL a lease can no
    longer extend or write fenced data, as with Redis, and `hold`'s watchdog
    re-arms it while a living holder works. Unlike Redis, a holder that is
    alive but stuck past its TTL still keeps the others waiting: a flock
    cannot be taken from a living process (gunicorn's worker timeout ends
    such a holder, and the kernel then frees its lock).

    A lock file lives while its name is held: the holder removes it before
    letting go, so the directory holds the names in use (and any a killed
    holder left, until the name's next release), not every name ever used.
    filelock never removes its files, and removing one is safe only this
    way: by its holder, with every waiter checking, once it has the flock,
    that the path still names the file it locked (`_still_named`); a waiter
    that locked a removed file tries again on the new one.

    The fence is max(last + 1, the clock in microseconds), as in `locks`:
    synchronous=NORMAL may lose the last commits on power loss, and a fence
    must not repeat even then (it assumes the host's clock moves forward).
    The same floor lets a name's row go `record_ttl` seconds after its last
    lease ended (see `locks`).
    """

    def __init__(
        self, directory: Path, db: Database, record_ttl: float = RECORD_TTL_SECONDS
    ) -> None:
        self._dir = directory
        self._db = db
        self._record_ttl = record_ttl
        self._next_sweep = 0.0
        self._held: dict[str, FileLock] = {}

    def _lock_for(self, name: str) -> FileLock:
        path = self._dir / f"lock-{name}"
        return FileLock(
            path,
            thread_local=False,
            is_singleton=False,
            # A soft (existence) lock would not be released when a holder dies.
            fallback_to_soft=False,
            on_acquired=functools.partial(_still_named, path),
        )

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        return self._acquire(name, ttl, 0)

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        lease = self._acquire(name, ttl, wait)
        if lease is None:
            raise LockTimeout(name, wait)
        return lease

    def _flock(self, name: str, wait: float) -> FileLock | None:
        """The name's file, locked; None if it stayed locked for `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            lock = self._lock_for(name)
            try:
                lock.acquire(timeout=max(0.0, deadline - time.monotonic()), poll_interval=0.005)
            except Timeout:
                return None
            except _Removed:
                continue  # its holder let go as this caller locked it: lock the new file
            return lock

    def _sweep(self) -> None:
        """Forget the rows of names unused for `record_ttl` (their fences included)."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + min(SWEEP_EVERY_SECONDS, self._record_ttl)
            self._db.changes(
                "DELETE FROM leases WHERE expires_at < ?", (time.time() - self._record_ttl,)
            )

    def _acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        check_ttl(ttl)
        self._sweep()
        lock = self._flock(name, wait)
        if lock is None:
            return None
        try:
            token = new_token()
            # A first fence is the clock; later ones max(last + 1, clock): see the docstring.
            row = self._db.returning(
                "INSERT INTO leases (name, token, fence, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET token = excluded.token, "
                "fence = MAX(fence + 1, excluded.fence), expires_at = excluded.expires_at "
                "RETURNING fence",
                (name, token, time.time_ns() // 1000, time.time() + ttl),
            )
            self._held[token] = lock
            return Lease(name, token, int(row[0]))
        except BaseException:
            lock.release()
            raise

    def release(self, lease: Lease) -> bool:
        lock = self._held.pop(lease.token, None)
        if lock is None:
            return False
        try:
            # The row stays record_ttl from now, with the last fence in it.
            self._db.changes(
                "UPDATE leases SET token = NULL, expires_at = ? WHERE name = ? AND token = ?",
                (time.time(), lease.name, lease.token),
            )
        finally:
            try:
                # Removed while still locked: see the class docstring.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock.lock_file)
            finally:
                lock.release()
        return True

    def extend(self, lease: Lease, ttl: float) -> bool:
        """Reset the remaining TTL to `ttl`, only while the lease still holds."""
        check_ttl(ttl)
        now = time.time()
        extended = self._db.changes(
            "UPDATE leases SET expires_at = ? WHERE name = ? AND token = ? AND expires_at > ?",
            (now + ttl, lease.name, lease.token, now),
        )
        return extended == 1

    def read_fenced(self, name: str, key: str) -> bytes | None:
        row = self._db.one("SELECT value FROM fenced WHERE name = ? AND key = ?", (name, key))
        if row is None:
            return None
        return row[0] if isinstance(row[0], bytes) else str(row[0]).encode()

    def write_fenced(self, lease: Lease, key: str, value: bytes | str) -> None:
        written = self._db.changes(
            "INSERT INTO fenced (name, key, value) "
            "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM leases WHERE name = ? "
            "AND token = ? AND fence = ? AND expires_at > ?) "
            "ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
            (lease.name, key, value, lease.name, lease.token, lease.fence, time.time()),
        )
        if written != 1:
            raise LockLost(lease.name)
