"""Concurrent requests through nginx reach more than one gunicorn worker process.

A worker is a (host, pid) pair: replicas behind `docker compose up --scale
web=3` run their workers under the same pids. EXPECT_HOSTS (default 1) is how
many hosts must answer, e.g. 2 against a scaled compose stack.
"""

from __future__ import annotations

import os

from client import Client, assert_json, run_concurrently, unique

FRAMEWORKS = {"flask", "django", "aiohttp"}
EXPECT_HOSTS = int(os.environ.get("EXPECT_HOSTS", "").strip() or "1")


def test_worker_fields(client: Client, configured_worker_class: str) -> None:
    body = assert_json(client.get("/api/worker"), 200)
    assert isinstance(body["pid"], int) and not isinstance(body["pid"], bool), body
    assert body["pid"] > 1, body
    assert isinstance(body["host"], str) and body["host"], body
    # The class gunicorn really runs (recorded by post_worker_init), as configured.
    assert body["worker_class"] == configured_worker_class, body
    assert isinstance(body["framework"], str) and body["framework"] in FRAMEWORKS, body


def test_concurrent_requests_reach_several_workers(client: Client) -> None:
    # Slow requests (each its own lock, so they never wait on each other) keep
    # workers busy; a sync worker then cannot take the fast probes, which must
    # land elsewhere. Under threaded or green workers the load spreads anyway.
    def slow() -> None:
        resp = client.post(f"/api/locked-increment/{unique('spread')}", json={"hold_ms": 250})
        assert_json(resp, 200)

    def probe() -> dict:
        return assert_json(client.get("/api/worker"), 200)

    calls = []
    for i in range(40):
        calls.append(probe)
        if i % 3 == 0:
            calls.append(slow)
    answers = [a for a in run_concurrently(calls, threads=16) if a is not None]

    assert len(answers) == 40
    workers = {(a["host"], a["pid"]) for a in answers}
    assert len(workers) >= 2, f"all 40 probes were answered by {workers}"
    hosts = {a["host"] for a in answers}
    assert len(hosts) >= EXPECT_HOSTS, f"{EXPECT_HOSTS} hosts expected, only {hosts} answered"
    assert len({a["worker_class"] for a in answers}) == 1, answers
    assert len({a["framework"] for a in answers}) == 1, answers
