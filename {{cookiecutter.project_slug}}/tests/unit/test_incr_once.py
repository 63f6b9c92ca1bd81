"""Idempotency-Key increments: at most once per key, on a real Redis and on SQLite.

A retry whose first attempt's answer was lost, or was a 503 after a stalled
Redis ran the command anyway, must count once in all and get the first
answer back; a key reused for another request is refused. Redis is a
redis-server of the test's own (free loopback port, stopped by pid).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from {{ cookiecutter.package_name }} import embedded
from {{ cookiecutter.package_name }}.errors import BackendUnavailable, IdempotencyKeyReused
from {{ cookiecutter.package_name }}.state import RedisState

CONCURRENT = 50
DAY = 86400.0


def redis_client(port: int, timeout: float = 5.0) -> redis.Redis:
    # As backend.make_client: socket timeouts and no automatic retries.
    return redis.Redis(
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def redis_state(port: int, prefix: str, timeout: float = 5.0) -> RedisState:
    return RedisState(redis_client(port, timeout), prefix)


def open_sqlite(directory: Path) -> embedded.SqliteState:
    return embedded.SqliteState(embedded.open_database(directory))


@pytest.fixture(params=["redis", "sqlite"])
def make_state(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of states that all share one store, so a test can use several."""
    if request.param == "redis":
        port = request.getfixturevalue("redis_server").port
        prefix = f"test-{uuid.uuid4().hex[:8]}"
        return lambda: redis_state(port, prefix)
    return lambda: open_sqlite(tmp_path / "data")


def test_a_retry_gets_the_first_answer_and_counts_nothing(make_state) -> None:
    state = make_state()
    state.incr("c", 5)
    first = state.incr_once("c", 3, "key-1", DAY)
    assert first == 8
    # The answer was lost; the client sends it again, twice.
    assert state.incr_once("c", 3, "key-1", DAY) == 8
    assert make_state().incr_once("c", 3, "key-1", DAY) == 8
    assert state.get_counter("c") == 8
    # Another key is another increment.
    assert state.incr_once("c", 3, "key-2", DAY) == 11
    assert state.get_counter("c") == 11


def test_a_key_reused_for_another_request_is_refused(make_state) -> None:
    state = make_state()
    assert state.incr_once("a", 2, "k", DAY) == 2
    with pytest.raises(IdempotencyKeyReused):
        state.incr_once("a", 3, "k", DAY)  # another `by`
    with pytest.raises(IdempotencyKeyReused):
        state.incr_once("b", 2, "k", DAY)  # another counter
    assert (state.get_counter("a"), state.get_counter("b")) == (2, 0)
    # The first request is still answered as the first time.
    assert state.incr_once("a", 2, "k", DAY) == 2


def test_a_key_is_forgotten_after_its_lifetime(make_state) -> None:
    state = make_state()
    assert state.incr_once("t", 1, "short", 0.3) == 1
    assert state.incr_once("t", 1, "short", 0.3) == 1
    time.sleep(0.6)
    # A new lifetime: the key may now serve another request, and counts again.
    assert state.incr_once("t", 4, "short", 0.3) == 5


def test_concurrent_requests_with_one_key_count_once(make_state) -> None:
    states = [make_state() for _ in range(4)]  # several clients, as several workers have

    def send(i: int) -> int:
        return states[i % len(states)].incr_once("burst", 7, "one-key", DAY)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, range(CONCURRENT)))
    assert answers == [7] * CONCURRENT
    assert states[0].get_counter("burst") == 7


def _send_from_process(directory: Path, key: str, results) -> None:
    state = open_sqlite(directory)
    for _ in range(10):
        results.put(state.incr_once("procs", 2, key, DAY))


def test_processes_sharing_sqlite_count_each_key_once(tmp_path: Path) -> None:
    """Forked processes, as gunicorn's workers are: BEGIN IMMEDIATE makes them take turns."""
    directory = tmp_path / "data"
    open_sqlite(directory)  # created before the fork, like a stack's first worker
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [
        context.Process(target=_send_from_process, args=(directory, key, results))
        for key in ("k1", "k1", "k1", "k2")
    ]
    for child in children:
        child.start()
    answers = [results.get(timeout=60) for _ in range(40)]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert sorted(set(answers)) == [2, 4]  # k1 counted once, k2 once
    assert open_sqlite(directory).get_counter("procs") == 4


def test_counter_and_its_key_records_share_a_cluster_slot(redis_server) -> None:
    """A script may only touch keys of one Redis Cluster slot: the counter's name is
    a hash tag, so the counter and each of its `once` records hash alike."""
    port = redis_server.port
    client = redis_client(port)
    state = RedisState(client, "slots")
    state.incr_once("visits", 1, "abc", DAY)
    keys = {k.decode() for k in client.scan_iter("slots:*")}
    counter = "slots:counter:{visits}"
    assert counter in keys, keys
    done = [k for k in keys if k.startswith(counter + ":once:")]
    assert len(done) == 1, keys
    assert key_slot(counter.encode()) == key_slot(done[0].encode())
    # The binding is alone in its script, so its own slot is fine.
    assert "slots:idempotency:abc" in keys, keys


def test_a_timed_out_increment_runs_later_and_only_a_key_makes_the_retry_safe(
    redis_server,
) -> None:
    """The defect: Redis paused, the client times out (a 503), Redis resumes and runs
    the command it had received. A plain retry then counts twice; a keyed one once."""
    port, pid = redis_server.port, redis_server.pid
    prefix = f"stall-{uuid.uuid4().hex[:8]}"
    plain, keyed = redis_state(port, prefix, timeout=0.5), redis_state(port, prefix, timeout=0.5)
    # Connected before the stall, as a busy worker's pool is: the command is sent.
    assert plain.get_counter("plain") == keyed.get_counter("keyed") == 0
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackendUnavailable):
            plain.incr("plain", 5)
        with pytest.raises(BackendUnavailable):
            keyed.incr_once("keyed", 5, "retry-me", DAY)
    finally:
        os.kill(pid, signal.SIGCONT)
    fresh = redis_state(port, prefix)
    deadline = time.monotonic() + 10
    # The stalled commands run once Redis reads them; wait until the plain one has.
    while fresh.get_counter("plain") != 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh.get_counter("plain") == 5, "the timed-out INCRBY never ran"
    assert fresh.incr("plain", 5) == 10  # the retry: counted twice in all
    assert fresh.incr_once("keyed", 5, "retry-me", DAY) == 5
    assert fresh.incr_once("keyed", 5, "retry-me", DAY) == 5
    assert fresh.get_counter("keyed") == 5


def test_the_sqlite_transaction_leaves_nothing_behind_when_refused(tmp_path: Path) -> None:
    state = open_sqlite(tmp_path / "data")
    state.incr_once("x", 1, "k", DAY)
    with pytest.raises(IdempotencyKeyReused):
        state.incr_once("y", 1, "k", DAY)
    # The write lock was released: another connection can write at once.
    other = open_sqlite(tmp_path / "data")
    done = threading.Event()

    def write() -> None:
        other.incr("z")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(2), "the refused transaction kept SQLite's write lock"
    assert (state.get_counter("x"), state.get_counter("y"), state.get_counter("z")) == (1, 0, 1)
