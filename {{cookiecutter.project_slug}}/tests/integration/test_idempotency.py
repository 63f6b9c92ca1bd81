"""Idempotency-Key through nginx: retries count once, whichever worker answers them.

Fifty requests carrying one key, sent at once through several workers, add
`by` exactly once and all get the same answer. A 503 while Redis is paused
is not a "nothing happened": Redis runs what it had received once it
resumes, so only the key makes the retry safe.
"""

from __future__ import annotations

import os
import signal
import time

from client import (
    Client,
    assert_error,
    assert_json,
    describe,
    run_concurrently,
    unique,
)

CONCURRENT = 50
THREADS = 16


def incr(client: Client, name: str, by: int, key: str | None, **kwargs):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(f"/api/counters/{name}/incr", json={"by": by}, headers=headers, **kwargs)


def test_concurrent_requests_with_one_key_count_once(client: Client) -> None:
    name, key = unique("idem"), unique("key")
    answers = run_concurrently(
        [lambda: assert_json(incr(client, name, 7, key), 200) for _ in range(CONCURRENT)],
        threads=THREADS,
    )
    assert answers == [{"name": name, "value": 7}] * CONCURRENT
    assert assert_json(client.get(f"/api/counters/{name}"), 200)["value"] == 7
    # A new key is a new increment; without a key every request counts.
    assert assert_json(incr(client, name, 7, unique("key")), 200)["value"] == 14
    assert assert_json(incr(client, name, 1, None), 200)["value"] == 15
    assert assert_json(incr(client, name, 1, None), 200)["value"] == 16


def test_a_key_reused_for_another_request_is_422(client: Client) -> None:
    name, other, key = unique("idem"), unique("idem"), unique("key")
    assert assert_json(incr(client, name, 2, key), 200)["value"] == 2
    assert_error(incr(client, name, 3, key), 422, "idempotency_key_reused")
    assert_error(incr(client, other, 2, key), 422, "idempotency_key_reused")
    assert assert_json(client.get(f"/api/counters/{name}"), 200)["value"] == 2
    assert assert_json(client.get(f"/api/counters/{other}"), 200)["value"] == 0
    # The first request, sent again, still gets its first answer.
    assert assert_json(incr(client, name, 2, key), 200) == {"name": name, "value": 2}


def test_a_malformed_key_is_400(client: Client) -> None:
    name = unique("idem")
    for key in ("", "a b", "x" * 65, "a/b", "caf\u00e9".encode().decode("latin-1")):
        resp = incr(client, name, 1, key)
        assert_error(resp, 400, "invalid_idempotency_key")
    # The longest and shortest keys the contract allows.
    for key in ("k", "K" * 64, "a-b_c.d"):
        assert_json(incr(client, name, 1, key), 200)
    assert assert_json(client.get(f"/api/counters/{name}"), 200)["value"] == 3


def test_a_503_then_a_retry_with_the_key_counts_once(redis_stack) -> None:
    """Redis paused mid-request: 503 (the outcome unknown); resumed, the retry counts once."""
    client = Client(redis_stack.base_url)
    name, key = unique("stalled"), unique("key")
    # Every worker connected and the scripts loaded, as in service: the next command
    # is really sent, and runs once Redis resumes.
    run_concurrently([lambda: assert_json(incr(client, name, 1, None), 200)] * 8, threads=8)
    run_concurrently(
        [lambda: assert_json(incr(client, unique("warm"), 1, unique("key")), 200)] * 8, threads=8
    )
    start = assert_json(client.get(f"/api/counters/{name}"), 200)["value"]
    pid = redis_stack.pids()["redis-server"]
    os.kill(pid, signal.SIGSTOP)
    try:
        first = incr(client, name, 5, key)
        assert_error(first, 503, "backend_unavailable")
        assert "may or may not" in first.json()["error"]["message"], describe(first)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Each worker's breaker may answer 503 for a moment more: retry, with the key.
    retry = answered(lambda: incr(client, name, 5, key))
    assert assert_json(retry, 200) == {"name": name, "value": start + 5}
    again = answered(lambda: incr(client, name, 5, key))
    assert assert_json(again, 200) == {"name": name, "value": start + 5}
    assert assert_json(answered(lambda: client.get(f"/api/counters/{name}")), 200) == {
        "name": name,
        "value": start + 5,
    }


def answered(send, seconds: float = 15.0):
    """The first answer that is not a 503 (a breaker still open after Redis resumed)."""
    deadline = time.monotonic() + seconds
    while True:
        resp = send()
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        assert_error(resp, 503, "backend_unavailable")
        time.sleep(0.2)
