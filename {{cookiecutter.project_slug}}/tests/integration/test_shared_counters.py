"""Counters live in the shared backend: concurrent increments via many workers add up exactly."""

from __future__ import annotations

import random

from client import Client, assert_json, run_concurrently, unique


def incr(client: Client, name: str, by: int | None = None) -> dict:
    kwargs = {} if by is None else {"json": dict(by=by)}
    body = assert_json(client.post(f"/api/counters/{name}/incr", **kwargs), 200)
    assert body["name"] == name, body
    return body


def read(client: Client, name: str) -> int:
    body = assert_json(client.get(f"/api/counters/{name}"), 200)
    assert body["name"] == name, body
    return body["value"]


def test_unknown_counter_reads_zero(client: Client) -> None:
    assert read(client, unique("never-set")) == 0


def test_body_is_optional_and_by_defaults_to_one(client: Client) -> None:
    name = unique("default-by")
    assert incr(client, name)["value"] == 1
    body = assert_json(client.post(f"/api/counters/{name}/incr", json={}), 200)
    assert body["value"] == 2, body
    assert read(client, name) == 2


def test_concurrent_increments_are_exact_across_workers(client: Client) -> None:
    name = unique("hits")
    total = 300

    def probe() -> dict:
        return {"pid": assert_json(client.get("/api/worker"), 200)["pid"]}

    calls = []
    for i in range(total):
        calls.append(lambda: incr(client, name))
        if i % 10 == 0:
            calls.append(probe)
    answers = run_concurrently(calls, threads=16)

    values = sorted(a["value"] for a in answers if "value" in a)
    pids = {a["pid"] for a in answers if "pid" in a}
    assert len(pids) >= 2, f"every probe was answered by pid {pids}: nothing proves spreading"
    # Each increment is atomic, so each caller saw a different value after its own.
    assert values == list(range(1, total + 1)), f"duplicates or gaps in {values}"
    assert read(client, name) == total


def test_signed_increments_sum_exactly(client: Client) -> None:
    name = unique("signed")
    rng = random.Random(20240607)
    steps = [
        rng.choice([-1_000_000, -977, -3, -1, 0, 1, 2, 41, 5000, 1_000_000]) for _ in range(120)
    ]
    answers = run_concurrently([lambda by=by: incr(client, name, by) for by in steps], threads=12)
    assert len(answers) == len(steps)
    assert read(client, name) == sum(steps)
    # Whatever order they ran in, the last writer saw the full sum.
    assert sum(steps) in {a["value"] for a in answers}
