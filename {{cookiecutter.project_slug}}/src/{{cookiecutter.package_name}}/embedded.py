"""The embedded backend: shared state and locks for one host, with no Redis.

Every gunicorn worker on the host opens the same SQLite database (WAL mode,
single-statement atomic upserts, a busy timeout) and the same lock files
(`flock`, released by the kernel if the holder dies). That is correct for
several processes on ONE machine only: never put the directory on a network
filesystem, and when the service outgrows one host, set REDIS_URL.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
import threading
import time
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import ApiError, LockTimeout
from .locks import Lease, LockLost, Locks

# Waiting this long on a write lock is normal under load; past it, answer 503.
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS fences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS guarded (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def private_dir(path: Path) -> Path:
    """Create (or check) a directory only this user can enter; never a symlink."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ApiError(500, "bad_data_dir", f"{path} must be a real directory.")
    if info.st_uid != os.getuid():
        raise ApiError(500, "bad_data_dir", f"{path} belongs to another user.")
    os.chmod(path, 0o700)
    return path


class Database:
    """One SQLite connection per process, opened after the fork.

    One connection guarded by a lock, not one per thread: under gevent a
    thread-local would open a connection per greenlet. Every statement is
    short and in autocommit, so the lock is held for microseconds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
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
            conn.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL loses at most the last commits on power loss, never integrity.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        with self._guard:
            return self._connect().execute(sql, params).fetchone()

    def changes(self, sql: str, params: tuple = ()) -> int:
        with self._guard:
            return self._connect().execute(sql, params).rowcount


class SqliteState:
    """The same interface as `state.RedisState`, on the embedded database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def incr(self, name: str, by: int = 1) -> int:
        row = self._db.one(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value RETURNING value",
            (name, by),
        )
        return int(row[0])

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


class FileLocks(Locks):
    """The same interface as `locks.RedisLocks`, with one `flock`ed file per name.

    `filelock` does the locking (flock, O_NOFOLLOW, a fresh descriptor per
    acquisition, so nothing is shared across fork). The kernel releases a
    dead holder's lock, so no TTL is needed for crashes; `ttl` is accepted
    for the common interface. The fence lives in SQLite and is incremented
    while the lock is held.
    """

    def __init__(self, directory: Path, db: Database) -> None:
        self._dir = directory
        self._db = db
        self._held: dict[str, FileLock] = {}

    def _lock_for(self, name: str) -> FileLock:
        return FileLock(
            self._dir / f"lock-{name}",
            thread_local=False,
            is_singleton=False,
            # A soft (existence) lock would not be released when a holder dies.
            fallback_to_soft=False,
        )

    def _lease(self, name: str, lock: FileLock) -> Lease:
        row = self._db.one(
            "INSERT INTO fences (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (name,),
        )
        token = secrets.token_hex(16)
        self._held[token] = lock
        return Lease(name, token, int(row[0]))

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        return self._acquire(name, 0)

    def acquire(self, name: str, ttl: float, wait: float) -> Lease:
        lease = self._acquire(name, wait)
        if lease is None:
            raise LockTimeout(name, wait)
        return lease

    def _acquire(self, name: str, wait: float) -> Lease | None:
        lock = self._lock_for(name)
        try:
            lock.acquire(timeout=wait, poll_interval=0.005)
        except Timeout:
            return None
        try:
            return self._lease(name, lock)
        except BaseException:
            lock.release()
            raise

    def release(self, lease: Lease) -> bool:
        lock = self._held.pop(lease.token, None)
        if lock is None:
            return False
        lock.release()
        return True

    def extend(self, lease: Lease, ttl: float) -> bool:
        return lease.token in self._held

    def read_guarded(self, lease: Lease) -> int:
        row = self._db.one("SELECT value FROM guarded WHERE name = ?", (lease.name,))
        return int(row[0]) if row else 0

    def write_guarded(self, lease: Lease, value: int) -> None:
        written = self._db.changes(
            "INSERT INTO guarded (name, value) "
            "SELECT ?, ? WHERE (SELECT value FROM fences WHERE name = ?) = ? "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (lease.name, value, lease.name, lease.fence),
        )
        if written != 1:
            raise LockLost(lease.name)
