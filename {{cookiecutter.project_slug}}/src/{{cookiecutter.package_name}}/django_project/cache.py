"""Django cache backends that every worker process shares.

Without Redis, `SQLiteCache` keeps Django's cache in the embedded store's
SQLite database (DATA_DIR), so `cache.add` and `cache.incr` are atomic across
every worker on this host: each is one SQL statement, or one IMMEDIATE
transaction where a cull must make room first. Django's own backends
fall short here: `LocMemCache` is private to each process; `FileBasedCache`
and `DatabaseCache` implement `incr` as get-then-set in Python (Django's docs:
"not guaranteed to be atomic"), so concurrent increments from several workers
lose updates. With Redis, `SharedRedisCache` is django-redis (incr is one Lua
step, one pool per process) whose `clear()` cannot flush the whole database.

A cache may drop any entry to stay within its bounds (Django's MAX_ENTRIES and
CULL_FREQUENCY), so state that must last, like the example counters, lives in
a cache alias of its own, settings.STATE_CACHE_ALIAS: `SQLiteStateCache`, in a
table no cull touches, or, with Redis, keys under their own prefix (Redis
evicts nothing: noeviction). checks.py refuses a state cache that could drop
entries.
"""

from __future__ import annotations

import pickle
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django_redis.cache import RedisCache

from .. import embedded

# The same shape for both: SQLiteCache's table, which culls, and the state's, which never does.
_SCHEMA = [
    statement
    for table in ("django_cache", "django_state")
    for statement in (
        f"CREATE TABLE IF NOT EXISTS {table} "
        "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL)",
        # Expired rows, and the rows a cull drops first, are found in expiry order.
        f"CREATE INDEX IF NOT EXISTS {table}_expiry ON {table} (expires_at)",
    )
]
# About one write in this many to the state also deletes its expired rows.
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
            for statement in _SCHEMA:
                db.changes(statement)
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
    """The embedded store as a Django cache: atomic add/incr across processes, one host.

    Bounded as Django's own caches are: a new key that finds MAX_ENTRIES rows
    (default 300) first drops the expired ones and then, if the table is still
    full, the 1/CULL_FREQUENCY of rows (default 3) that expire soonest, those
    without expiry last; CULL_FREQUENCY 0 empties the table. Never keep state
    here: `SQLiteStateCache` is for that.
    """

    table = "django_cache"

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._db = _database(Path(location).resolve())

    def _sql(self, statement: str) -> str:
        # The table's name is a class constant, never input.
        return statement.format(table=self.table)

    def _expiry(self, timeout: float | None) -> float | None:
        # Django's convention: None never expires; 0 or less expires at once.
        return self.get_backend_timeout(timeout)

    def _write(self, key: str, statement: str, params: tuple[object, ...]) -> int:
        """A write that may add `key`'s row, after making room for it.

        The count, the cull and the write are one IMMEDIATE transaction: workers
        adding keys at once each find the room the others left, so together they
        never take the table past MAX_ENTRIES.
        """
        with self._db.transaction() as conn:
            self._make_room(conn, key)
            return conn.execute(self._sql(statement), params).rowcount

    def _make_room(self, conn: sqlite3.Connection, key: str) -> None:
        if conn.execute(self._sql("SELECT 1 FROM {table} WHERE key = ?"), (key,)).fetchone():
            return  # the write replaces a row: the table does not grow
        (rows,) = conn.execute(self._sql("SELECT count(*) FROM {table}")).fetchone()
        if rows < self._max_entries:
            return
        if self._cull_frequency == 0:
            conn.execute(self._sql("DELETE FROM {table}"))
            return
        rows -= conn.execute(
            self._sql("DELETE FROM {table} WHERE expires_at <= ?"), (time.time(),)
        ).rowcount
        if rows >= self._max_entries:
            # At least enough for the new row to fit, whatever CULL_FREQUENCY is.
            cull = max(rows // self._cull_frequency, rows - self._max_entries + 1)
            conn.execute(
                self._sql(
                    "DELETE FROM {table} WHERE key IN "
                    "(SELECT key FROM {table} ORDER BY expires_at NULLS LAST LIMIT ?)"
                ),
                (cull,),
            )

    def add(
        self,
        key: str,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        # An expired row counts as absent and is replaced in the same statement.
        added = self._write(
            key,
            "INSERT INTO {table} (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires_at = excluded.expires_at "
            "WHERE {table}.expires_at IS NOT NULL AND {table}.expires_at <= ?",
            (key, _encode(value), self._expiry(timeout), time.time()),
        )
        return added == 1

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        # A row is live while it has no expiry or its expiry is still ahead.
        row = self._db.one(
            self._sql(
                "SELECT value FROM {table} WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
            ),
            (key, time.time()),
        )
        return default if row is None else _decode(row[0])

    def set(
        self,
        key: str,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        self._write(
            key,
            "INSERT INTO {table} (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, expires_at = excluded.expires_at",
            (key, _encode(value), self._expiry(timeout)),
        )

    def touch(
        self, key: str, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        touched = self._db.changes(
            self._sql(
                "UPDATE {table} SET expires_at = ? "
                "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
            ),
            (self._expiry(timeout), key, time.time()),
        )
        return touched == 1

    def delete(self, key: str, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._db.changes(self._sql("DELETE FROM {table} WHERE key = ?"), (key,)) == 1

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        """One UPDATE ... RETURNING: atomic whichever worker runs it."""
        key = self.make_and_validate_key(key, version=version)
        now = time.time()
        row = self._db.one(
            self._sql(
                "UPDATE {table} SET value = value + ? WHERE key = ? "
                "AND typeof(value) = 'integer' AND (expires_at IS NULL OR expires_at > ?) "
                "RETURNING value"
            ),
            (int(delta), key, now),
        )
        if row is None:
            live = self._db.one(
                self._sql(
                    "SELECT 1 FROM {table} WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
                ),
                (key, now),
            )
            if live:
                raise TypeError(f"The value of {key!r} is not an integer.")
            raise ValueError(f"Key {key!r} not found.")
        return int(row[0])

    def clear(self) -> None:
        self._db.changes(self._sql("DELETE FROM {table}"))


class SQLiteStateCache(SQLiteCache):
    """SQLiteCache for state (the example counters, their idempotency records): never culled.

    A table of its own, which no write of the default cache counts or culls and
    which its `clear()` leaves alone. It has no bound but what is stored in it,
    so checks.py refuses MAX_ENTRIES and CULL_FREQUENCY here rather than ignore them.
    """

    table = "django_state"

    def _write(self, key: str, statement: str, params: tuple[object, ...]) -> int:
        # One statement, atomic by itself: nothing to count, nothing to cull.
        changed = self._db.changes(self._sql(statement), params)
        if random.randrange(_SWEEP_EVERY) == 0:  # noqa: S311 (not security)
            self._db.changes(self._sql("DELETE FROM {table} WHERE expires_at <= ?"), (time.time(),))
        return changed


class SharedRedisCache(RedisCache):  # type: ignore[misc]  # django-redis ships no types
    """django-redis, but `clear()` deletes this cache's keys only.

    django-redis's `clear()` is FLUSHDB, which would also wipe the locks and
    state the toolkit keeps in the same Redis database; nothing in django-redis
    scopes it, so this one method is ours.
    """

    def clear(self) -> None:
        self.delete_pattern("*")
