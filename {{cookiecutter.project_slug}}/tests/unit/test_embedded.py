"""The embedded backend, shared by real forked processes on one host."""

import multiprocessing
import os
import time

import pytest

from {{ cookiecutter.package_name }} import embedded
from {{ cookiecutter.package_name }}.errors import ConfigError, LockLost, LockTimeout

PROCESSES = 4
# A stack's cold start: this many workers open a new database at the same moment.
OPENERS = 12
ROUNDS = 15


def open_backend(directory):
    db = embedded.open_database(directory)
    locks_dir = embedded.private_dir(directory / "locks")
    return embedded.SqliteState(db), embedded.FileLocks(locks_dir, db)


def run_in_processes(target, *args):
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=target, args=args) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0


def _increment(directory, times):
    state, _ = open_backend(directory)
    for _ in range(times):
        state.incr("hits")


def _open_together(directory, barrier):
    barrier.wait(30)
    state, _ = open_backend(directory)
    state.incr("opened")


def test_many_processes_opening_a_fresh_database_together_all_succeed(tmp_path):
    """The cold start of a stack: every worker opens the new database at once."""
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        directory = tmp_path / f"round-{round_}"
        barrier = context.Barrier(OPENERS)
        procs = [
            context.Process(target=_open_together, args=(directory, barrier))
            for _ in range(OPENERS)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * OPENERS, f"round {round_}"
        state, _ = open_backend(directory)
        assert state.get_counter("opened") == OPENERS


def test_increments_from_several_processes_are_exact(tmp_path):
    run_in_processes(_increment, tmp_path, 300)
    state, _ = open_backend(tmp_path)
    assert state.get_counter("hits") == PROCESSES * 300


def _locked_read_modify_write(directory, times, log):
    _, locks = open_backend(directory)
    for _ in range(times):
        with locks.hold("job", ttl=10, wait=30) as lease:
            value = int(locks.read_fenced("job", "v") or 0)
            time.sleep(0.001)
            locks.write_fenced(lease, "v", str(value + 1))
            with open(log, "a") as f:
                f.write(f"{lease.fence}\n")


def test_file_locks_exclude_other_processes_and_fences_increase(tmp_path):
    log = tmp_path / "fences.log"
    run_in_processes(_locked_read_modify_write, tmp_path, 50, log)
    _, locks = open_backend(tmp_path)
    assert int(locks.read_fenced("job", "v")) == PROCESSES * 50
    fences = [int(line) for line in log.read_text().split()]
    assert fences == sorted(fences) and len(set(fences)) == len(fences)


def _locked_plain_increment(directory, times, counter):
    _, locks = open_backend(directory)
    for _ in range(times):
        with locks.hold("plain", ttl=10, wait=30):
            # Unguarded by any fence: only the flock keeps two processes apart.
            value = int(counter.read_text())
            counter.write_text(str(value + 1))


def test_a_lock_file_lives_only_while_held_and_still_excludes(tmp_path):
    """Each release removes the file while it is still locked: waiters that had
    opened it find it gone and lock the new one, never both at once."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    run_in_processes(_locked_plain_increment, tmp_path, 200, counter)
    assert int(counter.read_text()) == PROCESSES * 200
    assert list((tmp_path / "locks").iterdir()) == []


def test_a_stale_lease_cannot_write(tmp_path):
    _, locks = open_backend(tmp_path)
    old = locks.acquire("x", ttl=10, wait=1)
    locks.release(old)
    new = locks.acquire("x", ttl=10, wait=1)
    with pytest.raises(LockLost):
        locks.write_fenced(old, "v", "99")
    locks.write_fenced(new, "v", "1")
    assert locks.read_fenced("x", "v") == b"1"
    assert not locks.release(old)


def test_a_busy_lock_times_out(tmp_path):
    _, locks = open_backend(tmp_path)
    _, other = open_backend(tmp_path)
    held = locks.acquire("x", ttl=10, wait=1)
    with pytest.raises(LockTimeout):
        other.acquire("x", ttl=10, wait=0.05)
    locks.release(held)
    other.release(other.acquire("x", ttl=10, wait=1))


def test_ttl_is_honoured(tmp_path):
    state, _ = open_backend(tmp_path)
    state.set("k", b"v", ttl=0.05)
    state.set("forever", "v")
    assert state.get("k") == b"v"
    time.sleep(0.1)
    assert state.get("k") is None
    assert state.get("forever") == b"v"


def test_the_directory_is_private_and_never_a_symlink(tmp_path):
    assert os.stat(embedded.private_dir(tmp_path / "data")).st_mode & 0o777 == 0o700
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="DATA_DIR"):
        embedded.private_dir(tmp_path / "link")


def test_a_lease_past_its_ttl_cannot_extend_or_write(tmp_path):
    _, locks = open_backend(tmp_path)
    lease = locks.acquire("t", ttl=0.05, wait=1)
    assert locks.extend(lease, 0.2), "a live lease extends"
    time.sleep(0.3)
    assert not locks.extend(lease, 10)
    with pytest.raises(LockLost):
        locks.write_fenced(lease, "v", "1")
    locks.release(lease)
    fresh = locks.acquire("t", ttl=10, wait=1)
    assert fresh.fence > lease.fence
    locks.write_fenced(fresh, "v", "2")


def test_set_if_absent_takes_an_expired_key_but_not_a_live_one(tmp_path):
    state, _ = open_backend(tmp_path)
    assert state.set_if_absent("k", b"first", ttl=0.05)
    assert not state.set_if_absent("k", b"second", ttl=10)
    time.sleep(0.1)
    assert state.set_if_absent("k", b"third", ttl=10)
    assert state.get("k") == b"third"
