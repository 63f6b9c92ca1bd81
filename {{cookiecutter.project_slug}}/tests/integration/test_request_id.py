"""Every answer carries X-Request-ID: the client's own, or a fresh 32-hex id."""

from __future__ import annotations

import uuid

from client import HEX32, Client, describe


def test_client_request_id_comes_back_unchanged(client: Client) -> None:
    sent = f"it-{uuid.uuid4().hex}"
    resp = client.get("/healthz", headers={"X-Request-ID": sent})
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("X-Request-ID") == sent, dict(resp.headers)


def test_a_request_id_is_made_when_none_is_sent(client: Client) -> None:
    ids = []
    for path in ("/healthz", "/api/worker", f"/no-such-route-{uuid.uuid4().hex}"):
        resp = client.get(path)
        got = resp.headers.get("X-Request-ID", "")
        assert HEX32.fullmatch(got), f"X-Request-ID {got!r}: {describe(resp)}"
        ids.append(got)
    assert len(set(ids)) == len(ids), ids
