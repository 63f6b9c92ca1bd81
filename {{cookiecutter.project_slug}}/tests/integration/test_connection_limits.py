"""nginx bounds the requests in flight, per client and in all, and answers past
either bound: 503 `busy` with Retry-After, never a reset.

Past its worker_connections nginx can only drop connections, so its limits on
requests in flight must come first. Two tests hold requests in nginx itself: a
POST whose body has not arrived is counted from its header on, and nginx
(buffering request bodies) has not yet passed it to gunicorn, so the count is
exact whatever the worker class. The third sends as many requests at once as the
issue that found this did, through to the application.
"""

from __future__ import annotations

import json
import re
import selectors
import socket
import time
from urllib.parse import urlsplit

import pytest
from stacks import EXTERNAL_BASE_URL, NEEDS_OWN_STACK

# Seconds: how long every phase below may take, loaded machine included.
PHASE_SECONDS = 30.0
BODY = b"{}"


def nginx_limits(stack) -> tuple[int, int]:
    """(per client, in all): what the stack's nginx was really given."""
    conf = (stack.nginx_dir / "app.conf").read_text()
    per_client = re.search(r"limit_conn per_client (\d+);", conf)
    total = re.search(r"limit_conn per_server (\d+);", conf)
    assert per_client and total, "app.conf no longer limits requests in flight"
    return int(per_client.group(1)), int(total.group(1))


def head(method: str, path: str, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answered(raw: bytes) -> bool:
    """Whether `raw` holds an answer's header and all the body it announced."""
    header, found, body = raw.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)\r?$", header)
    return bool(found and length and len(body) >= int(length.group(1)))


class Flood:
    """Many connections from loopback addresses, read without threads."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.address = (parts.hostname, parts.port)
        self.socks: list[socket.socket] = []
        self.received: dict[socket.socket, bytes] = {}
        self.reset: list[socket.socket] = []

    def open(self, count: int, request: bytes, source: str) -> None:
        """`count` connections from `source` (to nginx, one client), each sending `request`."""
        for _ in range(count):
            sock = socket.create_connection(
                self.address, timeout=PHASE_SECONDS, source_address=(source, 0)
            )
            sock.sendall(request)
            self.socks.append(sock)
            self.received[sock] = b""

    def read(self, socks: list[socket.socket], until: float) -> list[socket.socket]:
        """Read `socks` until each holds a whole answer or `until`; those answered.

        A whole answer, not a closed connection: nginx lingers after refusing a
        request whose body it has not read, before it closes."""
        closed: list[socket.socket] = []
        with selectors.DefaultSelector() as selector:
            for sock in socks:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < until:
                for key, _ in selector.select(timeout=max(0.0, until - time.monotonic())):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        self.reset.append(sock)
                        chunk = b""
                    self.received[sock] += chunk
                    if not chunk or answered(self.received[sock]):
                        selector.unregister(sock)
                        closed.append(sock)
        for sock in socks:
            sock.setblocking(True)
        return closed

    def answer(self, sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
        raw = self.received[sock]
        header, _, body = raw.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), f"not an HTTP answer: {raw[:200]!r}"
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def assert_busy(flood: Flood, sock: socket.socket) -> None:
    status, headers, body = flood.answer(sock)
    assert status == 503, (status, body)
    assert headers.get("retry-after") == "1", headers
    assert json.loads(body)["error"]["code"] == "busy", body


def held(stack, sources: list[str], each: int) -> tuple[Flood, list[socket.socket]]:
    """`each` POSTs from every address, headers sent and bodies not: nginx holds
    them all; returns the flood and the connections nginx answered at once."""
    flood = Flood(stack.base_url)
    for source in sources:
        flood.open(each, head("POST", "/healthz", len(BODY)), source)
    # nginx answers a refused request as soon as it has read its header; one it
    # admitted waits for its body, so none of those can be answered here.
    return flood, flood.read(flood.socks, time.monotonic() + 2.0)


def finish(flood: Flood, refused: list[socket.socket]) -> None:
    """Send the bodies nginx waits for: every admitted request reaches the
    application, which answers a POST to /healthz 405 (a route every project has)."""
    waiting = [sock for sock in flood.socks if sock not in refused]
    for sock in waiting:
        sock.sendall(BODY)
    done = flood.read(waiting, time.monotonic() + PHASE_SECONDS)
    assert len(done) == len(waiting), "admitted requests were never answered"
    assert not flood.reset
    assert {flood.answer(sock)[0] for sock in waiting} == {405}


@pytest.mark.same_for_every_worker_class  # nginx holds these requests; no worker sees them
def test_one_client_past_its_share_is_told_busy(stack) -> None:
    if EXTERNAL_BASE_URL:
        pytest.skip(NEEDS_OWN_STACK)
    per_client, _ = nginx_limits(stack)
    flood, refused = held(stack, ["127.0.0.31"], per_client + 20)
    try:
        assert not flood.reset
        assert len(refused) == 20, f"{len(refused)} refused, 20 past the limit"
        for sock in refused:
            assert_busy(flood, sock)
        # Another client is served meanwhile.
        probe = Flood(stack.base_url)
        probe.open(1, head("GET", "/healthz"), "127.0.0.32")
        probe.read(probe.socks, time.monotonic() + PHASE_SECONDS)
        assert probe.answer(probe.socks[0])[0] == 200
        probe.close()
        finish(flood, refused)
    finally:
        flood.close()


@pytest.mark.same_for_every_worker_class  # nginx holds these requests; no worker sees them
def test_past_the_total_every_client_is_told_busy_never_reset(stack) -> None:
    """More requests in flight than nginx could proxy, from several clients each
    within its share: the total limit refuses the rest, with JSON."""
    if EXTERNAL_BASE_URL:
        pytest.skip(NEEDS_OWN_STACK)
    per_client, total = nginx_limits(stack)
    clients = total // per_client + 1
    each = min(per_client, total // clients + 50)
    flood, refused = held(stack, [f"127.0.0.{40 + n}" for n in range(clients)], each)
    try:
        assert not flood.reset
        assert len(refused) == clients * each - total, (clients, each, total)
        for sock in refused:
            assert_busy(flood, sock)
        finish(flood, refused)
    finally:
        flood.close()


def test_six_hundred_requests_at_once_are_each_answered(stack) -> None:
    """The load that found this: 600 at once from one client, through to the
    application. Each gets a whole answer (served, or 503 busy), none a reset."""
    if EXTERNAL_BASE_URL:
        pytest.skip(NEEDS_OWN_STACK)
    flood = Flood(stack.base_url)
    try:
        flood.open(600, head("GET", "/healthz"), "127.0.0.33")
        closed = flood.read(flood.socks, time.monotonic() + PHASE_SECONDS)
        assert not flood.reset, f"{len(flood.reset)} of 600 were reset"
        assert len(closed) == 600
        statuses = {}
        for sock in flood.socks:
            status = flood.answer(sock)[0]
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                assert_busy(flood, sock)
        assert set(statuses) <= {200, 503}, statuses
    finally:
        flood.close()
