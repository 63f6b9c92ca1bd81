"""A cross-process lock guards a slow read-modify-write: no lost update, rising fencing tokens."""

from __future__ import annotations

import itertools
import threading
import time

from client import SHAPE_CODES, Client, assert_error, assert_json, run_concurrently, unique


def locked_increment(client: Client, name: str, hold_ms: int) -> dict:
    resp = client.post(f"/api/locked-increment/{name}", json={"hold_ms": hold_ms})
    body = assert_json(resp, 200)
    assert body["name"] == name, body
    assert isinstance(body["value"], int) and isinstance(body["fencing_token"], int), body
    return body


def test_concurrent_locked_increments_lose_nothing(client: Client) -> None:
    name = unique("guarded")
    n = 30
    answers = run_concurrently([lambda: locked_increment(client, name, 30)] * n, threads=15)

    values = sorted(a["value"] for a in answers)
    assert values == list(range(1, n + 1)), f"lost or repeated updates: {values}"
    tokens = [a["fencing_token"] for a in sorted(answers, key=lambda a: a["value"])]
    assert len(set(tokens)) == n, f"repeated fencing tokens: {tokens}"
    assert all(a < b for a, b in itertools.pairwise(tokens)), (
        f"tokens not increasing with values: {tokens}"
    )

    after = locked_increment(client, name, 0)
    assert after["value"] == n + 1, after
    assert after["fencing_token"] > tokens[-1], (after, tokens)


def test_hold_ms_out_of_range_is_rejected_and_writes_nothing(client: Client) -> None:
    name = unique("range")
    first = locked_increment(client, name, 0)
    assert first["value"] == 1, first
    for hold in (-1, 5001, 10**9, "10", 1.5, True, [10]):
        resp = client.post(f"/api/locked-increment/{name}", json={"hold_ms": hold})
        assert_error(resp, 400, SHAPE_CODES)
    assert locked_increment(client, name, 0)["value"] == 2


def test_a_caller_that_waits_too_long_gets_409_and_writes_nothing(short_lock_wait_stack) -> None:
    client = Client(short_lock_wait_stack.base_url)  # LOCK_WAIT_SECONDS=0.5
    name = unique("contended")
    holder: dict = {}

    def hold() -> None:
        try:
            holder["answer"] = locked_increment(client, name, 3000)
        except BaseException as exc:  # reported by the main thread below
            holder["error"] = exc

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        time.sleep(1.0)  # the holder has long taken the lock by now
        started = time.monotonic()
        resp = client.post(f"/api/locked-increment/{name}", json={"hold_ms": 0})
        waited = time.monotonic() - started
        assert_error(resp, 409, "lock_timeout")
        assert waited < 0.5 + 1.5, f"409 came after {waited:.2f}s, the wait limit is 0.5s"
    finally:
        thread.join(timeout=20)
    assert not thread.is_alive(), "the holder's request never finished"
    assert "error" not in holder, holder.get("error")
    assert holder["answer"]["value"] == 1, holder

    after = locked_increment(client, name, 0)
    assert after["value"] == 2, f"the refused caller's write happened: {after}"
    assert after["fencing_token"] > holder["answer"]["fencing_token"], (after, holder)
