"""Redis killed and restarted empty under load: 503s meanwhile, never a 500, and
fencing tokens that never repeat although Redis lost every key.

The stack's Redis keeps nothing on disk (`--save ""`), the harshest case: a
restart loses every counter and every fence. Liveness must stay fast
throughout, and the service must recover without being restarted.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from client import Client, describe, unique

LOAD_THREADS = 6
# How long each phase of the run lasts: before the kill, Redis down, after the restart.
BEFORE, DOWN, AFTER = 2.0, 2.0, 4.0
# The container health check allows 3 s; /healthz touches no backend.
HEALTH_WITHIN = 3.0


def test_redis_killed_and_restarted_under_load(redis_stack) -> None:
    client = Client(redis_stack.base_url)
    name = unique("restart")
    stop = threading.Event()
    results: list[tuple[float, float, str, int, dict | str]] = []
    guard = threading.Lock()

    def record(kind: str, call) -> None:
        started = time.monotonic()
        try:
            resp = call()
            status = resp.status_code
            try:
                body = resp.json()
            except ValueError:
                body = describe(resp)
        except Exception as exc:  # a refused or cut connection is a failure too
            status, body = 0, repr(exc)
        with guard:
            results.append((started, time.monotonic(), kind, status, body))

    def load(index: int) -> None:
        while not stop.is_set():
            if index % 3 == 0:
                record("health", lambda: client.get("/healthz", timeout=10))
            elif index % 3 == 1:
                record("incr", lambda: client.post(f"/api/counters/{name}/incr", timeout=10))
            else:
                record(
                    "locked",
                    lambda: client.post(
                        f"/api/locked-increment/{name}", json={"hold_ms": 0}, timeout=20
                    ),
                )

    threads = [threading.Thread(target=load, args=(i,)) for i in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE)
        killed_at = time.monotonic()
        os.kill(redis_stack.pids()["redis-server"], signal.SIGKILL)
        redis_stack.stop_redis()  # reaps it; nothing is written (no persistence)
        time.sleep(DOWN)
        redis_stack.start_redis()
        restarted_at = time.monotonic()
        time.sleep(AFTER)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    statuses = {}
    for _, _, kind, status, _ in results:
        statuses[(kind, status)] = statuses.get((kind, status), 0) + 1
    bad = [r for r in results if r[3] not in {200, 503}]
    assert not bad, f"answers other than 200 and 503: {bad[:5]} (all: {statuses})"
    unavailable = [r for r in results if r[3] == 503]
    assert all(r[4]["error"]["code"] == "backend_unavailable" for r in unavailable), unavailable[:3]
    assert unavailable, f"no request ever met the dead Redis: {statuses}"

    health = [r[1] - r[0] for r in results if r[2] == "health"]
    assert health and max(health) < HEALTH_WITHIN, f"/healthz took up to {max(health):.2f} s"

    # Tokens granted before the kill, and after the restart: the later all larger.
    locked = [r for r in results if r[2] == "locked" and r[3] == 200]
    tokens = [r[4]["fencing_token"] for r in locked]
    assert len(tokens) == len(set(tokens)), "a fencing token was granted twice"
    before = [r[4]["fencing_token"] for r in locked if r[1] < killed_at]
    after = [r[4]["fencing_token"] for r in locked if r[0] > restarted_at]
    assert before and after, f"locks granted before: {len(before)}, after: {len(after)}"
    assert min(after) > max(before), (
        f"fencing went backwards across the restart: {max(before)} before, {min(after)} after"
    )

    # Recovered without a restart of the service: what started 2 s after the
    # restart succeeded, and so does a fresh round on every endpoint.
    late = [r for r in results if r[0] > restarted_at + 2.0 and r[2] != "health"]
    assert all(r[3] == 200 for r in late), [(r[2], r[3], r[4]) for r in late if r[3] != 200][:5]
    for _ in range(6):
        assert client.post(f"/api/counters/{name}/incr").status_code == 200
        locked_again = client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0})
        assert locked_again.status_code == 200, describe(locked_again)
        assert locked_again.json()["fencing_token"] > max(tokens)
    longest = max(r[1] - r[0] for r in results)
    print(
        f"redis restart: {len(results)} requests, {len(unavailable)} answered 503, 0 failed, "
        f"longest {longest:.2f} s, /healthz longest {max(health):.2f} s, statuses {statuses}"
    )
