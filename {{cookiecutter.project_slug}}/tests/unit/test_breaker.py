"""The per-process circuit breaker: one timeout per stall, not one per call.

First its states on a clock the test moves, then against a real redis-server
paused with SIGSTOP (started on a free loopback port, stopped by pid), and
the embedded lock's release, which must be tried even while the breaker is
open.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from {{ cookiecutter.package_name }} import embedded
from {{ cookiecutter.package_name }}.breaker import Breaker, GuardedLocks, GuardedState
from {{ cookiecutter.package_name }}.errors import BackendUnavailable, LockTimeout
from {{ cookiecutter.package_name }}.locks import RedisLocks
from {{ cookiecutter.package_name }}.state import RedisState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail() -> None:
    raise BackendUnavailable("TimeoutError")


def run(breaker: Breaker, body=lambda: None) -> str:
    """What one guarded call came to: ran, failed (it ran), or refused (it did not)."""
    ran = []
    try:
        with breaker.guard("test.op"):
            ran.append(True)
            body()
    except BackendUnavailable:
        return "failed" if ran else "refused"
    return "ran"


def test_open_after_a_failure_then_one_trial_then_closed() -> None:
    clock = Clock()
    breaker = Breaker(1.0, clock)
    assert run(breaker) == "ran"
    assert run(breaker, fail) == "failed"
    assert not breaker.closed
    assert [run(breaker) for _ in range(5)] == ["refused"] * 5
    clock.now += 0.99
    assert run(breaker) == "refused"
    clock.now += 0.02
    # Half-open: one trial, which fails: open again for a full period.
    assert run(breaker, fail) == "failed"
    clock.now += 0.5
    assert run(breaker) == "refused"
    clock.now += 0.6
    assert run(breaker) == "ran"
    assert breaker.closed
    assert [run(breaker) for _ in range(3)] == ["ran"] * 3


def test_only_one_trial_at_a_time_until_it_answers() -> None:
    clock = Clock()
    breaker = Breaker(1.0, clock)
    run(breaker, fail)
    clock.now += 1.5
    entered, release = threading.Event(), threading.Event()

    def slow_trial() -> None:
        entered.set()
        assert release.wait(10)

    trial = threading.Thread(target=run, args=(breaker, slow_trial))
    trial.start()
    assert entered.wait(10)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(run(breaker))) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes == ["refused"] * 20
    # A trial still waiting after a whole period (a lock wait, say) lets the next one by.
    clock.now += 1.01
    assert run(breaker) == "ran"
    assert breaker.closed
    release.set()
    trial.join(10)


def test_a_backend_that_answers_with_an_error_is_up() -> None:
    clock = Clock()
    breaker = Breaker(1.0, clock)
    run(breaker, fail)
    clock.now += 1.5

    def busy() -> None:
        raise LockTimeout("x", 1.0)

    with pytest.raises(LockTimeout), breaker.guard("locks.acquire"):
        busy()
    assert breaker.closed


def test_zero_retry_after_never_refuses() -> None:
    breaker = Breaker(0.0)
    assert run(breaker, fail) == "failed"
    assert run(breaker) == "ran"


def test_a_refusal_is_logged_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    breaker = Breaker(5.0)
    cause = TimeoutError("Timeout reading from socket")
    with pytest.raises(BackendUnavailable), breaker.guard("state.incr"):
        raise BackendUnavailable("TimeoutError") from cause
    caplog.set_level(logging.WARNING)
    with pytest.raises(BackendUnavailable) as refused, breaker.guard("state.incr"):
        pass
    assert refused.value.reason.startswith("TimeoutError, not retried")
    assert "may or may not have taken effect" in str(refused.value)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "state.incr" in record.getMessage()
    assert "TimeoutError: Timeout reading from socket" in record.getMessage()


def timed(call) -> tuple[str, float]:
    started = time.monotonic()
    try:
        call()
        outcome = "ok"
    except BackendUnavailable:
        outcome = "503"
    return outcome, time.monotonic() - started


def test_a_paused_redis_costs_one_timeout_then_answers_at_once(
    redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    port, pid = redis_server.port, redis_server.pid
    timeout, retry_after = 0.5, 2.0
    client = redis.Redis(
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    breaker = Breaker(retry_after)
    state = GuardedState(RedisState(client, "breaker"), breaker)
    locks = GuardedLocks(RedisLocks(client, "breaker"), breaker)
    assert state.incr("n") == 1
    os.kill(pid, signal.SIGSTOP)
    try:
        first = timed(lambda: state.incr("n"))
        later = [timed(lambda: state.incr("n")) for _ in range(10)]
        later += [timed(lambda: locks.acquire("l", ttl=5, wait=1)) for _ in range(5)]
        later += [timed(state.ping) for _ in range(5)]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert first[0] == "503" and first[1] >= timeout * 0.9, first
    assert all(outcome == "503" for outcome, _ in later), later
    # Twenty calls answered in less time, together, than the one that waited.
    assert sum(took for _, took in later) < first[1], later
    # Every 503 was logged once, with its cause: the first by the translation, the
    # twenty others by the breaker.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 21, warnings
    assert "RedisState.incr" in warnings[0] and "TimeoutError" in warnings[0], warnings[0]
    assert all("not tried" in w and "TimeoutError" in w for w in warnings[1:]), warnings
    # Redis is back: after retry_after, the next call tries, succeeds and closes it.
    deadline = time.monotonic() + retry_after + 10
    while time.monotonic() < deadline:
        if timed(lambda: state.incr("n"))[0] == "ok":
            break
        time.sleep(0.1)
    assert breaker.closed
    assert state.get_counter("n") >= 2


def test_a_lock_is_released_even_while_the_breaker_is_open(tmp_path) -> None:
    """A flock is freed only by its holder: refusing the release would strand it."""
    db = embedded.open_database(tmp_path)
    breaker = Breaker(60.0)
    locks = GuardedLocks(embedded.FileLocks(embedded.private_dir(tmp_path / "locks"), db), breaker)
    other = embedded.FileLocks(tmp_path / "locks", embedded.open_database(tmp_path))
    lease = locks.acquire("shared", ttl=10, wait=1)
    with pytest.raises(BackendUnavailable), breaker.guard("test"):
        fail()
    assert not breaker.closed
    assert locks.release(lease)
    assert breaker.closed  # the release answered: the backend is up
    again = other.acquire("shared", ttl=10, wait=1)
    other.release(again)
