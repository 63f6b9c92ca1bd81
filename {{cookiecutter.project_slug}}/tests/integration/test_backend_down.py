"""With Redis stopped the service answers 503 quickly, and recovers by itself once Redis is back."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

from client import Client, assert_error, assert_json, run_concurrently, unique

# REDIS_TIMEOUT_SECONDS is 1 on this stack; an answer may take a little longer than that.
ANSWER_WITHIN = 5.0
# The stack's BACKEND_RETRY_SECONDS (the default): how long a worker's breaker stays open.
BREAKER_RETRY_SECONDS = 1.0


def timed(call):
    started = time.monotonic()
    resp = call()
    took = time.monotonic() - started
    assert took < ANSWER_WITHIN, (
        f"answered after {took:.1f}s: {resp.status_code} {resp.text[:200]!r}"
    )
    return resp


def poll_until_ready(client: Client, name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        ready = client.get("/readyz", timeout=ANSWER_WITHIN)
        incr = client.post(f"/api/counters/{name}/incr", timeout=ANSWER_WITHIN)
        last = (ready.status_code, ready.text[:200], incr.status_code, incr.text[:200])
        if ready.status_code == 200 and incr.status_code == 200:
            # A worker that failed in the last BACKEND_RETRY_SECONDS (1 s by default)
            # still answers 503 at once until its breaker lets a trial through.
            time.sleep(BREAKER_RETRY_SECONDS + 0.5)
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready {seconds}s after Redis came back: {last}")


def test_backend_down_then_back(redis_stack) -> None:
    client = Client(redis_stack.base_url)
    name = unique("outage")
    assert_json(client.get("/readyz"), 200)
    assert_json(client.post(f"/api/counters/{name}/incr"), 200)

    redis_stack.stop_redis()
    try:
        for _ in range(3):  # several tries, so more than one worker shows its answer
            body = assert_json(timed(lambda: client.get("/readyz")), 503)
            assert body["status"] == "unavailable", body
            assert isinstance(body["checks"]["state"], str) and body["checks"]["state"] != "ok", (
                body
            )
            assert_error(
                timed(lambda: client.post(f"/api/counters/{name}/incr")), 503, "backend_unavailable"
            )
            assert_error(
                timed(lambda: client.get(f"/api/counters/{name}")), 503, "backend_unavailable"
            )
            resp = timed(lambda: client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0}))
            assert_error(resp, 503, "backend_unavailable")
            assert assert_json(timed(lambda: client.get("/healthz")), 200)["status"] == "ok"
    finally:
        redis_stack.start_redis()

    poll_until_ready(client, unique("recovered"), seconds=10)
    # Every worker, not only the one that answered the poll, must recover. A worker
    # no request reached since the outage still holds its breaker's cause: its next
    # call is the one trial, and calls arriving while that trial is in flight are
    # refused at once ("not retried"), by design. So a burst may meet a refusal or
    # two, never anything else; a refused call never counts; and within the
    # breaker's retry window a whole burst must succeed on every worker.
    fresh = unique("after")
    counted = 0
    deadline = time.monotonic() + 2 * BREAKER_RETRY_SECONDS + ANSWER_WITHIN
    while True:
        answers = run_concurrently(
            [lambda: client.post(f"/api/counters/{fresh}/incr") for _ in range(20)], threads=8
        )
        served = [resp for resp in answers if resp.status_code == 200]
        refused = [resp for resp in answers if resp.status_code != 200]
        for resp in refused:
            error = assert_error(resp, 503, "backend_unavailable")
            assert "not retried" in error["message"], error
        for resp in served:
            assert_json(resp, 200)
        counted += len(served)
        if not refused:
            break
        assert time.monotonic() < deadline, f"{len(refused)} of 20 still refused after recovery"
    assert assert_json(client.get(f"/api/counters/{fresh}"), 200)["value"] == counted
    assert_json(client.post(f"/api/locked-increment/{fresh}", json={"hold_ms": 0}), 200)


def test_paused_redis_is_a_quick_503_not_a_hung_worker(redis_stack) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP): socket timeouts fire."""
    client = Client(redis_stack.base_url)
    name = unique("paused")
    assert_json(client.post(f"/api/counters/{name}/incr"), 200)
    redis_pid = redis_stack.pids()["redis-server"]
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            assert_error(
                timed(lambda: client.post(f"/api/counters/{name}/incr")), 503, "backend_unavailable"
            )
            assert assert_json(timed(lambda: client.get("/readyz")), 503)["status"] == "unavailable"
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    poll_until_ready(client, name, 10)


# The container health check allows 3 s; /healthz touches no backend.
HEALTH_WITHIN = 3.0
LOAD_THREADS = 8
STALL_SECONDS = 8.0


def test_a_stalled_redis_costs_a_worker_one_timeout_not_one_per_request(
    redis_stack, configured_worker_class: str
) -> None:
    """Redis paused under sustained load: /healthz stays fast, increments answer 503
    (never 500), and 200 again soon after Redis resumes, without a restart.

    Without the breaker, sync workers each wait a full socket timeout per
    increment, and /healthz queues behind them (4 s and more here).
    """
    client = Client(redis_stack.base_url)
    name = unique("stall")
    # Every worker connected first, as in service, and past the breaker an earlier
    # test may have left open in a worker (it closes within BACKEND_RETRY_SECONDS).
    deadline = time.monotonic() + 15
    while True:
        warm = run_concurrently(
            [lambda: client.post(f"/api/counters/{name}/incr").status_code for _ in range(8)],
            threads=8,
        )
        if all(status == 200 for status in warm):
            break
        assert time.monotonic() < deadline, f"not every worker answers 200: {warm}"
        time.sleep(0.5)
    stop = threading.Event()
    guard = threading.Lock()
    increments: collections.Counter[tuple[int, str]] = collections.Counter()
    health: list[tuple[float, int]] = []

    def load() -> None:
        while not stop.is_set():
            resp = client.post(f"/api/counters/{name}/incr")
            try:
                code = resp.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = resp.text[:80]
            with guard:
                increments[(resp.status_code, code)] += 1

    def poll_health() -> None:
        while not stop.is_set():
            started = time.monotonic()
            resp = client.get("/healthz")
            with guard:
                health.append((time.monotonic() - started, resp.status_code))
            time.sleep(0.2)

    threads = [threading.Thread(target=load) for _ in range(LOAD_THREADS)]
    threads.append(threading.Thread(target=poll_health))
    redis_pid = redis_stack.pids()["redis-server"]
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        for thread in threads:
            thread.start()
        time.sleep(STALL_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        os.kill(redis_pid, signal.SIGCONT)
    resumed = time.monotonic()
    recovered = None
    while time.monotonic() < resumed + 15:
        if client.post(f"/api/counters/{name}/incr", timeout=ANSWER_WITHIN).status_code == 200:
            recovered = time.monotonic() - resumed
            break
        time.sleep(0.1)

    worst = max(took for took, _ in health)
    print(
        f"\n[{configured_worker_class}] stalled {STALL_SECONDS:g} s: {len(health)} /healthz, "
        f"worst {worst:.2f} s; increments {dict(increments)}; "
        f"200 again {recovered if recovered is None else round(recovered, 2)} s after resume"
    )
    assert health and all(status == 200 for _, status in health), health
    assert worst < HEALTH_WITHIN, f"/healthz took {worst:.2f} s while Redis was paused"
    assert set(increments) == {(503, "backend_unavailable")}, increments
    assert recovered is not None, "increments still failed 15 s after Redis resumed"


def test_every_503_is_logged_with_its_cause(redis_stack) -> None:
    """The client reads a short reason; gunicorn's error log gets the cause, once per 503."""
    client = Client(redis_stack.base_url)
    name = unique("logged")
    poll_until_ready(client, name, 15)
    log = redis_stack.gunicorn_log
    offset = log.stat().st_size
    redis_pid = redis_stack.pids()["redis-server"]
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        answers = [timed(lambda: client.post(f"/api/counters/{name}/incr")) for _ in range(6)]
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    for resp in answers:
        error = assert_error(resp, 503, "backend_unavailable")
        assert "Timeout reading" not in error["message"], error  # the cause stays in the log
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    logged = [line for line in lines if "backend unavailable in" in line]
    assert len(logged) == len(answers), "\n".join(lines[-40:])
    for line in logged:
        assert "[WARNING]" in line, line
        # The exception's class and message, and the operation that failed.
        assert "TimeoutError" in line and "Timeout reading from" in line, line
        assert "incr" in line, line
    poll_until_ready(client, name, 15)
