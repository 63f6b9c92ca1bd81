"""Fencing tokens that never repeat, and leases a living holder keeps alive.

Against redis-server processes of the tests' own (started on free loopback
ports, stopped by pid) and the embedded backend: Redis restarted empty, a
failover to a replica that missed the last writes, a SQLite database that
lost its last commits. In each, the next fence must exceed every fence
issued before, or a stale holder's write could pass for a new one's.
"""

from __future__ import annotations

import signal
import sqlite3
import time
import uuid
from collections.abc import Callable

import pytest

from {{ cookiecutter.package_name }} import embedded
from {{ cookiecutter.package_name }}.errors import BackendUnavailable, LockLost
from {{ cookiecutter.package_name }}.locks import Lease, LockKeys, RedisLocks, Watchdog, renewing

# JSON clients read numbers as doubles: fences must stay exact there.
JSON_EXACT = 2**53


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.05)


def take_and_give_back(locks, name: str, times: int) -> list[int]:
    fences = []
    for _ in range(times):
        lease = locks.acquire(name, ttl=10, wait=5)
        fences.append(lease.fence)
        locks.release(lease)
    return fences


def acquire_once_reachable(locks: RedisLocks, name: str) -> Lease:
    """The first call after a restart may meet the dead server's connection."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return locks.acquire(name, ttl=10, wait=5)
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def prefix() -> str:
    return f"fence-{uuid.uuid4().hex[:8]}"


# -- fences across data loss --------------------------------------------------


def test_fences_keep_increasing_after_redis_restarts_empty(redis_servers) -> None:
    server = redis_servers("redis")
    client = server.client()
    locks = RedisLocks(client, prefix())
    issued = take_and_give_back(locks, "job", 5)
    held = locks.acquire("job", ttl=10, wait=0)  # a holder the crash catches mid-work
    issued.append(held.fence)
    assert issued == sorted(set(issued)), issued

    server.kill()
    server.start()  # same port, same worker-side client and script cache
    assert client.dbsize() == 0, "the restarted Redis was meant to have lost everything"

    fresh = acquire_once_reachable(locks, "job")
    assert fresh.fence > max(issued), (
        f"fence {fresh.fence} after the restart repeats one issued before: {issued}"
    )
    assert fresh.fence < JSON_EXACT
    with pytest.raises(LockLost):
        locks.write_fenced(held, "v", "stale")
    locks.write_fenced(fresh, "v", "1")
    locks.release(fresh)
    assert take_and_give_back(locks, "job", 1)[0] > fresh.fence


def test_fences_keep_increasing_after_failover_to_a_replica_that_missed_writes(
    redis_servers,
) -> None:
    primary = redis_servers("primary")
    replica = redis_servers("replica", replica_of=primary.port)
    on_replica = replica.client()
    wait_for(
        lambda: on_replica.info("replication").get("master_link_status") == "up",
        "the replica in sync with its primary",
    )
    name, key_prefix = "job", prefix()
    locks = RedisLocks(primary.client(), key_prefix)
    fence_key = LockKeys(key_prefix).fence(name)
    synced = take_and_give_back(locks, name, 3)
    wait_for(
        lambda: on_replica.get(fence_key) == str(synced[-1]).encode(),
        "the replica holding the primary's last fence",
    )

    # Cut the link while the replica is stopped, so it cannot reconnect: what the
    # primary takes from now on, the replica never receives (asynchronous replication).
    replica.signal(signal.SIGSTOP)
    try:
        primary.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
        wait_for(
            lambda: primary.client().info("replication")["connected_slaves"] == 0,
            "the primary without a replica",
        )
        missed = take_and_give_back(locks, name, 3)
        primary.kill()
    finally:
        replica.signal(signal.SIGCONT)
    on_replica.execute_command("REPLICAOF", "NO", "ONE")
    assert int(on_replica.get(fence_key)) < max(missed), "the replica did not miss the writes"

    promoted = RedisLocks(on_replica, key_prefix)
    lease = promoted.acquire(name, ttl=10, wait=5)
    assert lease.fence > max(synced + missed), (
        f"fence {lease.fence} after the failover repeats one issued before: {synced + missed}"
    )
    promoted.write_fenced(lease, "v", "1")


def test_embedded_fences_keep_increasing_after_the_database_lost_its_last_commits(
    tmp_path,
) -> None:
    """synchronous=NORMAL may lose the last commits on power loss: a copy from before them."""
    before, after = tmp_path / "before", tmp_path / "after"
    db = embedded.open_database(before)
    locks = embedded.FileLocks(embedded.private_dir(before / "locks"), db)
    issued = take_and_give_back(locks, "job", 1)
    after.mkdir(mode=0o700)
    with sqlite3.connect(db.path) as source, sqlite3.connect(after / db.path.name) as copy:
        source.backup(copy)
    issued += take_and_give_back(locks, "job", 4)

    reopened = embedded.open_database(after)
    locks = embedded.FileLocks(embedded.private_dir(after / "locks"), reopened)
    assert reopened.one("SELECT fence FROM leases WHERE name = 'job'")[0] < max(issued)
    fence = take_and_give_back(locks, "job", 1)[0]
    assert fence > max(issued), f"fence {fence} repeats one issued before: {issued}"
    assert fence < JSON_EXACT


# -- the watchdog ---------------------------------------------------------------


@pytest.fixture(params=["redis", "embedded"])
def two_clients(request, tmp_path, redis_servers) -> tuple[object, object]:
    """Two lock clients of one backend, as two worker processes would have."""
    if request.param == "redis":
        server = redis_servers("redis")
        key_prefix = prefix()
        return RedisLocks(server.client(), key_prefix), RedisLocks(server.client(), key_prefix)
    directory = tmp_path / "data"
    db = embedded.open_database(directory)
    locks_dir = embedded.private_dir(directory / "locks")
    other = embedded.open_database(directory)
    return embedded.FileLocks(locks_dir, db), embedded.FileLocks(locks_dir, other)


def watchdogs() -> int:
    """Leases this process is keeping alive."""
    return renewing()


def test_a_hold_lasts_past_its_ttl_while_the_holder_works(two_clients) -> None:
    locks, other = two_clients
    with locks.hold("long", ttl=1, wait=0) as lease:
        time.sleep(3.5)  # three and a half leases
        assert other.try_acquire("long", ttl=1) is None, "the lock was free while held"
        locks.write_fenced(lease, "v", "done")
        assert watchdogs() == 1
    assert watchdogs() == 0, "the watchdog outlived its hold"
    assert other.read_fenced("long", "v") == b"done"
    again = other.acquire("long", ttl=1, wait=1)
    assert again.fence > lease.fence
    other.release(again)


def test_a_lease_taken_over_is_recorded_and_its_writes_refused(two_clients) -> None:
    locks, other = two_clients
    lease = locks.acquire("lost", ttl=0.6, wait=0)
    taker = None
    if isinstance(locks, RedisLocks):
        # As if the holder had been paused past its TTL: the key expired, another took it.
        locks._redis.delete(locks._keys.owner("lost"))
        taker = other.acquire("lost", ttl=10, wait=0)
    else:
        time.sleep(1)  # the lease row expires (a flock cannot be taken from a living holder)
    watchdog = Watchdog(locks, lease, ttl=0.6)
    watchdog.start()
    try:
        wait_for(lambda: watchdog.failure is not None, "the watchdog noticing the lost lease")
        assert "expired or passed" in watchdog.failure
        wait_for(lambda: not watchdog.running, "the watchdog giving up")
    finally:
        watchdog.stop()
    assert watchdog.extensions == 0
    with pytest.raises(LockLost):
        locks.write_fenced(lease, "v", "stale")
    if taker is not None:
        other.write_fenced(taker, "v", "fresh")
        assert other.read_fenced("lost", "v") == b"fresh"
        other.release(taker)
    locks.release(lease)


def test_the_watchdog_retries_while_redis_is_down_and_stops_on_exit(redis_servers) -> None:
    server = redis_servers("redis")
    locks = RedisLocks(server.client(timeout=0.5), prefix())
    lease = locks.acquire("down", ttl=1.5, wait=0)
    watchdog = Watchdog(locks, lease, ttl=1.5)
    watchdog.start()
    try:
        wait_for(lambda: watchdog.extensions >= 1, "one extension while Redis is up")
        server.kill()
        wait_for(lambda: watchdog.failure is not None, "the watchdog meeting a dead Redis")
        assert watchdog.failure.startswith("BackendUnavailable"), watchdog.failure
        time.sleep(1)
        assert watchdog.running, "one failed extension must not end the watchdog"
    finally:
        started = time.monotonic()
        watchdog.stop()
    assert time.monotonic() - started < 5, "stopping waited on more than one call"
    assert not watchdog.running


# -- records forgotten ----------------------------------------------------------

# Shorter than the holds below, longer than their leases (1 s).
RECORD_TTL = 1.5


@pytest.fixture(params=["redis", "embedded"])
def short_records(request, tmp_path, redis_servers) -> tuple[object, object]:
    """`two_clients` whose lock records are forgotten RECORD_TTL after their last use."""
    if request.param == "redis":
        server = redis_servers("redis")
        key_prefix = prefix()
        return (
            RedisLocks(server.client(), key_prefix, record_ttl=RECORD_TTL),
            RedisLocks(server.client(), key_prefix, record_ttl=RECORD_TTL),
        )
    directory = tmp_path / "data"
    locks_dir = embedded.private_dir(directory / "locks")
    return (
        embedded.FileLocks(locks_dir, embedded.open_database(directory), RECORD_TTL),
        embedded.FileLocks(locks_dir, embedded.open_database(directory), RECORD_TTL),
    )


def has_record(locks, name: str) -> bool:
    """Whether the backend still remembers lock `name` (its fence key, or its row)."""
    if isinstance(locks, RedisLocks):
        return bool(locks._redis.exists(locks._keys.fence(name)))
    locks.release(locks.acquire("another", ttl=1, wait=1))  # its sweep runs at an acquisition
    return locks._db.one("SELECT count(*) FROM leases WHERE name = ?", (name,))[0] > 0


def test_a_hold_longer_than_the_record_ttl_keeps_its_fence(short_records) -> None:
    locks, other = short_records
    with locks.hold("long", ttl=1, wait=0) as lease:
        time.sleep(2 * RECORD_TTL)  # each renewal re-arms the record with the lease
        assert other.try_acquire("long", ttl=1) is None, "the lock was free while held"
        locks.write_fenced(lease, "v", "done")
    assert other.read_fenced("long", "v") == b"done"


def test_a_forgotten_lock_still_gets_a_higher_fence(short_records) -> None:
    locks, other = short_records
    first = locks.acquire("once", ttl=1, wait=0)
    locks.write_fenced(first, "v", "kept")
    locks.release(first)
    assert has_record(locks, "once")
    wait_for(lambda: not has_record(locks, "once"), "the lock's record forgotten", seconds=15)
    again = other.acquire("once", ttl=1, wait=1)
    assert again.fence > first.fence, (again.fence, first.fence)
    assert other.read_fenced("once", "v") == b"kept", "the value written under it went too"
    other.release(again)
