"""What nginx itself refuses, odd methods and oversized input: the one JSON error.

nginx answers some requests before the application sees them, several before
it has even chosen a server by Host: a malformed request line, an oversized
URI or header, an unknown transfer coding, an HTTP version it does not speak.
Each must still be the contract's `{"error": {"code", "message"}}` with
Content-Type application/json and the right status, whatever the URI's
extension. HTTP client libraries refuse to send most of these requests, so
they go over a raw socket, byte for byte.
"""

from __future__ import annotations

import http.client
import socket
import stat
from urllib.parse import urlsplit

import pytest
from client import TIMEOUT, Client, RawResponse, assert_error, describe, header

# Run on each framework's default worker class only by the template's CI, because
# nginx answers these before gunicorn does, or gunicorn's one parser and socket
# settings do, whatever the class.
pytestmark = pytest.mark.same_for_every_worker_class

# Larger than nginx's large header buffer (8 KiB by default), where the request
# line or one header line must fit; small enough that nginx reads all of it
# before it answers (unread bytes at close would turn into a reset).
OVERSIZED = 12 * 1024
# A file the project ships in static/, served by nginx itself.
STATIC_FILE = "/static/robots.txt"


def send(base_url: str, request: bytes, method: str = "GET") -> RawResponse:
    """Write `request` as is on a new connection and read the one answer."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock, method=method)
        answer.begin()
        content = answer.read()
    return RawResponse(
        method=method,
        url=f"{base_url} <- {request[:80]!r}",
        status_code=answer.status,
        headers={name.lower(): value for name, value in answer.getheaders()},
        content=content,
    )


def host_of(base_url: str) -> bytes:
    return urlsplit(base_url).netloc.encode()


def request_bytes(base_url: str, line: bytes, *headers: bytes) -> bytes:
    """A request with `line`, a Host nginx serves, `headers`, and no keep-alive."""
    fields = [b"Host: " + host_of(base_url), *headers, b"Connection: close"]
    return line + b"\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


def test_malformed_request_line_is_400_json(base_url: str) -> None:
    for line in (b"GET / HTTP/1.1 extra", b"get /healthz HTTP/1.1", b"GET /a\x00b HTTP/1.1"):
        assert_error(send(base_url, request_bytes(base_url, line)), 400, "bad_request")


def test_bytes_that_are_no_request_line_are_400_json(base_url: str) -> None:
    # Before nginx knows any Host: the default server answers.
    assert_error(send(base_url, b"\x16\x03\x01garbage\r\n\r\n"), 400, "bad_request")


def test_http11_without_host_is_400_json(base_url: str) -> None:
    resp = send(base_url, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert_error(resp, 400, "bad_request")


def test_huge_uri_is_414_json(base_url: str) -> None:
    line = b"GET /" + b"a" * OVERSIZED + b" HTTP/1.1"
    assert_error(send(base_url, request_bytes(base_url, line)), 414, "uri_too_long")


@pytest.mark.parametrize("host_first", [True, False], ids=["host-first", "host-after"])
def test_huge_header_is_431_json(base_url: str, host_first: bool) -> None:
    # nginx's own code for this is 494, which it shows as 400 by default. With
    # Host after the huge header, nginx has not chosen a server yet.
    huge = b"X-Huge: " + b"h" * OVERSIZED
    fields = [b"Host: " + host_of(base_url), huge]
    if not host_first:
        fields.reverse()
    raw = b"GET /healthz HTTP/1.1\r\n" + b"".join(f + b"\r\n" for f in fields)
    resp = send(base_url, raw + b"Connection: close\r\n\r\n")
    assert_error(resp, 431, "request_header_too_large")


def test_unknown_transfer_coding_is_501_json(base_url: str) -> None:
    raw = request_bytes(base_url, b"POST /healthz HTTP/1.1", b"Transfer-Encoding: gzip")
    assert_error(send(base_url, raw), 501, "not_implemented")


@pytest.mark.parametrize("version", [b"HTTP/3.0", b"HTTP/2.0"])
def test_unsupported_http_version_is_505_json(base_url: str, version: bytes) -> None:
    raw = request_bytes(base_url, b"GET /healthz " + version)
    assert_error(send(base_url, raw), 505, "http_version_not_supported")


def test_malformed_chunked_body_is_400_json(base_url: str) -> None:
    raw = request_bytes(base_url, b"POST /healthz HTTP/1.1", b"Transfer-Encoding: chunked")
    assert_error(send(base_url, raw + b"zz\r\n"), 400, "bad_request")


@pytest.mark.parametrize(
    "path", ["/x.txt", "/static/x.txt", "/static/x.html", "/_internal/x.css", "/nope.json"]
)
def test_not_found_is_json_whatever_the_extension(client: Client, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


def test_errors_about_a_file_nginx_serves_are_json(client: Client) -> None:
    served = client.get(STATIC_FILE)
    assert served.status_code == 200, describe(served)
    # A range past its end, and a precondition that does not hold.
    assert_error(
        client.get(STATIC_FILE, headers={"Range": "bytes=999999-"}), 416, "range_not_satisfiable"
    )
    assert_error(
        client.get(STATIC_FILE, headers={"If-Match": '"no-such-etag"'}), 412, "precondition_failed"
    )
    for method in ("POST", "DELETE", "TRACE"):
        refused = client.request(method, STATIC_FILE)
        assert_error(refused, 405, "method_not_allowed")
        assert set(methods(refused)) == {"GET", "HEAD"}, describe(refused)


def methods(resp) -> list[str]:
    return [name.strip().upper() for name in header(resp, "Allow").split(",") if name.strip()]


def test_options_on_a_route_is_204_with_allow(client: Client) -> None:
    resp = client.request("OPTIONS", "/healthz")
    assert resp.status_code == 204, describe(resp)
    assert resp.content == b"", describe(resp)
    assert "html" not in header(resp, "Content-Type"), dict(resp.headers)
    assert {"GET", "HEAD", "OPTIONS"} <= set(methods(resp)), dict(resp.headers)
    assert "POST" not in methods(resp), dict(resp.headers)


def test_options_on_an_unknown_route_is_404_json(client: Client) -> None:
    assert_error(client.request("OPTIONS", "/no/such/route"), 404, "not_found")


def test_trace_is_405_json_with_the_routes_allow(client: Client) -> None:
    # nginx refuses TRACE before it chooses a location; the route's methods
    # come back as for any other method the route lacks.
    for method in ("TRACE", "DELETE"):
        resp = client.request(method, "/healthz")
        assert_error(resp, 405, "method_not_allowed")
        assert {"GET", "HEAD"} <= set(methods(resp)), describe(resp)
        assert method not in methods(resp), describe(resp)


def test_trace_on_an_unknown_route_is_404_json(client: Client) -> None:
    assert_error(client.request("TRACE", "/no/such/route"), 404, "not_found")


def test_trace_for_a_host_we_do_not_serve_gets_no_answer(base_url: str) -> None:
    parts = urlsplit(base_url)
    raw = b"TRACE /healthz HTTP/1.1\r\nHost: not-served.invalid\r\nConnection: close\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == b"", received[:300]


# What a client, or a TLS proxy in front of nginx, may add; each alone, and all at once
# (gunicorn's default trusts three scheme headers and refuses any two that disagree).
CLIENT_FORWARDING = [
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Protocol", "ssl"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Scheme", "https"),
    ("Forwarded", "for=192.0.2.1;proto=https;host=elsewhere.invalid"),
    ("X-Forwarded-Host", "elsewhere.invalid"),
    ("X-Forwarded-Prefix", "/elsewhere"),
]


@pytest.mark.parametrize(
    "headers",
    [dict([pair]) for pair in CLIENT_FORWARDING] + [dict(CLIENT_FORWARDING)],
    ids=[name for name, _ in CLIENT_FORWARDING] + ["all"],
)
def test_a_clients_forwarding_headers_change_nothing(client: Client, headers: dict) -> None:
    for path in ("/healthz", "/readyz"):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 200, describe(resp)
        assert resp.json()["status"] == "ok", describe(resp)


def test_gunicorn_socket_is_not_open_to_other_users(stack) -> None:
    mode = stack.gunicorn_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    # Anyone who may connect can hold a sync worker with a slow request.
    assert mode & 0o007 == 0, oct(mode)
{% if cookiecutter.include_examples %}


def test_a_huge_invalid_value_is_not_echoed_whole(client: Client) -> None:
    # A 1 MB label: just under nginx's 1 MiB body limit, so the application refuses it.
    body = b'{"size_bytes": 10, "label": "' + b"x" * 1_000_000 + b'"}'
    resp = client.post("/api/exports", data=body, headers={"Content-Type": "application/json"})
    error = assert_error(resp, 400, "invalid_request")
    assert len(resp.content) < 1024, len(resp.content)
    assert error["message"].startswith("label: "), error
{% endif %}
