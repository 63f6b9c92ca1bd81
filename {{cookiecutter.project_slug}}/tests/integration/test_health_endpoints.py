"""/healthz and /readyz answer the contract's shapes through nginx."""

from __future__ import annotations

from client import Client, assert_json


def test_healthz_is_ok(client: Client) -> None:
    body = assert_json(client.get("/healthz"), 200)
    assert body["status"] == "ok", body


def test_readyz_reports_the_state_backend(client: Client) -> None:
    body = assert_json(client.get("/readyz"), 200)
    assert body["status"] == "ok", body
    assert body["checks"]["state"] == "ok", body
