"""Django cache backends that every worker process shares.

Without Redis, `SQLiteCache` keeps Django's cache in the embedded store's
SQLite database (DATA_DIR), so `cache.add` and `cache.incr` are atomic across
every worker on this host: each is one SQL statement. Django's own backends
fall short here: `LocMemCache` is private to each process; `FileBasedCache`
and `DatabaseCache` implement `incr` as get-then-set in Python (Django's docs:
"not guaranteed to be atomic"), so concurrent increments from several workers
lose updates. With Redis, `SharedRedisCache` is django-redis (incr is one Lua
step, one pool per process) whose `clear()` cannot flush the whole database.
"""

from __future__ import annotations

import pickle
import random
import threading
import time
from pathlib import Path
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django_redis.cache import RedisCache

from .. import embedded

_TABLE = """
CREATE TABLE IF NOT EXISTS django_cache (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL
)
"""
# About one write in this many also deletes the expired rows.
_SWEEP_EVERY = 1000

_databases: dict[Path, embedded.Database] = {}
_databases_guard = threading.Lock()


def _database(directory: Path) -> embedded.Database:
    """One `Database` per directory and process: Django makes a cache object per
    thread (and per greenlet under gevent), and they must not each open SQLite."""
    with _databases_guard:
        db = _databases.get(directory)
        if db is None:
            db = embedded.open_database(directory)
            db.changes(_TABLE)
            _databases[directory] = db
        return db


def _encode(value: Any) -> int | bytes:
    # Integers are stored as SQLite integers so that incr is arithmetic in SQL;
    # everything else (bools too) is pickled, as Django's own backends do.
    if type(value) is int:
        return value
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _decode(stored: int | bytes) -> Any:
    if isinstance(stored, int):
        return stored
    # Only this service writes the file, in a directory only its user can enter.
    return pickle.loads(stored)  # noqa: S301


class SQLiteCache(BaseCache):
    """The embedded store as a Django cache: atomic add/incr across processes, one host."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._db = _database(Path(location).resolve())

    def _expiry(self, timeout: float | None) -> float | None:
        # Django's convention: None never expires; 0 or less expires at once.
        return self.get_backend_timeout(timeout)

    def _sweep(self) -> None:
        if random.randrange(_SWEEP_EVERY) == 0:  # noqa: S311 (not security)
            self._db.changes(
                "DELETE FROM django_cache WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (time.time(),),
            )

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        now = time.time()
        # An expired row counts as absent and is replaced in the same statement.
        added = self._db.changes(
            "INSERT INTO django_cache (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires_at = excluded.expires_at "
            "WHERE django_cache.expires_at IS NOT NULL AND django_cache.expires_at <= ?",
            (key, _encode(value), self._expiry(timeout), now),
        )
        self._sweep()
        return added == 1

    def get(self, key, default=None, version=None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        # A row is live while it has no expiry or its expiry is still ahead.
        row = self._db.one(
            "SELECT value FROM django_cache "
            "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, time.time()),
        )
        return default if row is None else _decode(row[0])

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._db.changes(
            "INSERT INTO django_cache (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires_at = excluded.expires_at",
            (key, _encode(value), self._expiry(timeout)),
        )
        self._sweep()

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        now = time.time()
        touched = self._db.changes(
            "UPDATE django_cache SET expires_at = ? "
            "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (self._expiry(timeout), key, now),
        )
        return touched == 1

    def delete(self, key, version=None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._db.changes("DELETE FROM django_cache WHERE key = ?", (key,)) == 1

    def incr(self, key, delta=1, version=None) -> int:
        """One UPDATE ... RETURNING: atomic whichever worker runs it."""
        key = self.make_and_validate_key(key, version=version)
        now = time.time()
        row = self._db.one(
            "UPDATE django_cache SET value = value + ? WHERE key = ? "
            "AND typeof(value) = 'integer' AND (expires_at IS NULL OR expires_at > ?) "
            "RETURNING value",
            (int(delta), key, now),
        )
        if row is None:
            live = self._db.one(
                "SELECT 1 FROM django_cache "
                "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            )
            if live:
                raise TypeError(f"The value of {key!r} is not an integer.")
            raise ValueError(f"Key {key!r} not found.")
        return int(row[0])

    def clear(self) -> None:
        self._db.changes("DELETE FROM django_cache")


class SharedRedisCache(RedisCache):
    """django-redis, but `clear()` deletes this cache's keys only.

    django-redis's `clear()` is FLUSHDB, which would also wipe the locks and
    state the toolkit keeps in the same Redis database; nothing in django-redis
    scopes it, so this one method is ours.
    """

    def clear(self) -> None:
        self.delete_pattern("*")
