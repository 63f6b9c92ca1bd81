"""Lock names a client makes up leave nothing behind for good, and fences still only go up.

Through nginx, with real workers, on each backend. Every lock name used
once leaves its own records (the fence) for LOCK_RECORD_TTL_SECONDS (2 s
here) after its last use, then nothing but the value written under it (the
user's data, like a counter). The embedded backend keeps a lock file only
while its name is held. A name used again after its records are gone still
gets a fencing token above every one it had before.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from client import Client, assert_json, run_concurrently, unique
from stacks import own_stack_or_skip

KEY_PREFIX = "lockrecords"
RECORD_SECONDS = 2.0
# Distinct names, as a client inventing one per request would use them.
NAMES = 60
# Ceiling on waiting for the records to go: their TTL, plus the embedded sweep's
# period (at most the TTL), plus a loaded machine's slack.
GONE_WITHIN = 2 * RECORD_SECONDS + 10.0


@pytest.fixture(scope="module")
def records_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    env = {
        "WEB_CONCURRENCY": "3",
        # The records must outlive the lease: the shortest lease the settings allow.
        "LOCK_TTL_SECONDS": "1",
        "LOCK_RECORD_TTL_SECONDS": str(RECORD_SECONDS),
        "KEY_PREFIX": KEY_PREFIX,
    }
    with own_stack_or_skip(tmp_path_factory, "lock-records", env) as started:
        yield started


def locked_increment(client: Client, name: str) -> dict:
    body = assert_json(client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0}), 200)
    assert body["name"] == name, body
    return body


def redis_records(stack, names: list[str]) -> dict[str, int]:
    """Each key the locks of `names` have in Redis, with its PTTL (-1: no expiry)."""
    found: dict[str, int] = {}
    with contextlib.closing(redis.Redis.from_url(stack.redis_url, socket_timeout=5)) as r:
        for name in names:
            pattern = f"{KEY_PREFIX}:lock:" + "{" + name + "}*"
            for key in r.scan_iter(match=pattern, count=1000):
                found[key.decode()] = int(r.pttl(key))
    return found


def embedded_records(stack, names: list[str]) -> tuple[list[str], int]:
    """The lock files in the data directory, and the lease rows of `names`."""
    files = sorted(p.name for p in (Path(stack.data_dir) / "locks").iterdir())
    database = Path(stack.data_dir) / "state.sqlite3"
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
        (rows,) = db.execute(
            "SELECT count(*) FROM leases WHERE name IN (SELECT value FROM json_each(?))",
            (json.dumps(names),),
        ).fetchone()
    return files, rows


def test_a_lock_names_records_expire_and_its_fences_still_rise(records_stack) -> None:
    client = Client(records_stack.base_url)
    names = [unique("once") for _ in range(NAMES)]
    first = run_concurrently([lambda n=n: locked_increment(client, n) for n in names], threads=12)
    fences = {body["name"]: body["fencing_token"] for body in first}

    if records_stack.backend == "redis":
        records = redis_records(records_stack, names)
        # The lease is gone (released); what stays is the fence and the value.
        kept = {key: ttl for key, ttl in records.items() if ":data:" not in key}
        assert len(kept) == NAMES, sorted(kept)
        forever = {key: ttl for key, ttl in kept.items() if not 0 < ttl <= RECORD_SECONDS * 1000}
        assert not forever, (
            f"{len(forever)} lock records without a TTL of at most {RECORD_SECONDS}s, e.g. "
            f"{sorted(forever.items())[:3]}"
        )
    else:
        files, rows = embedded_records(records_stack, names)
        assert files == [], f"{len(files)} lock files left by {NAMES} released names: {files[:5]}"
        assert rows == NAMES, rows

    # Past the TTL, only the values are left: one per name.
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        if records_stack.backend == "redis":
            left = sorted(k for k in redis_records(records_stack, names) if ":data:" not in k)
        else:
            # The embedded store forgets rows as a lock is next taken, in any worker.
            locked_increment(client, unique("sweep"))
            files, rows = embedded_records(records_stack, names)
            left = files + [f"{rows} lease rows"] * (rows > 0)
        if not left:
            break
        assert time.monotonic() < deadline, f"still there {GONE_WITHIN}s later: {left[:5]}"
        time.sleep(0.25)

    # The values stayed, and each name's next fence is above the one it had.
    again = run_concurrently([lambda n=n: locked_increment(client, n) for n in names], threads=12)
    for body in again:
        assert body["value"] == 2, body
        assert body["fencing_token"] > fences[body["name"]], (body, fences[body["name"]])
