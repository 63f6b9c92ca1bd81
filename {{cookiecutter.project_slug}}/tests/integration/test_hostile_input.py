"""Input built to hurt, through nginx: a 4xx JSON error every time, never a 500
or a hang, and the service answers normally afterwards.

test_bad_input.py covers malformed JSON, wrong shapes, bad names and one
oversize body. These are the inputs aimed at a parser (deep nesting, NaN,
numbers too long to convert), at a header or a log line (control characters,
CRLF), at the disk (traversal ids), at the proxy (chunked and oversize bodies,
a body smuggled past Content-Length) and at conversions (whole numbers written
as floats, values far out of range).
"""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

import pytest
from client import (
    SHAPE_CODES,
    TIMEOUT,
    Client,
    RawResponse,
    assert_error,
    assert_json,
    describe,
    unique,
)

# Run on each framework's default worker class only by the template's CI, because
# these are the app's validation, nginx's limits and gunicorn's one HTTP parser
# (gunicorn.http), which every class shares.
pytestmark = pytest.mark.same_for_every_worker_class

JSON_HEADERS = {"Content-Type": "application/json"}
# An error message may quote a refused value, never repeat it whole.
MAX_MESSAGE_CHARS = 1000
# Every POST endpoint with a JSON body, by a path that takes it ("@" is a fresh name).
BODY_PATHS = ["/api/counters/@/incr", "/api/locked-increment/@", "/api/exports", "/api/tasks/run"]
# Each numeric field of each endpoint, as JSON text around the value ("$").
NUMBER_FIELDS = [
    ("/api/counters/@/incr", '{"by": $}'),
    ("/api/locked-increment/@", '{"hold_ms": $}'),
    ("/api/exports", '{"size_bytes": $, "label": "hostile"}'),
    ("/api/tasks/run", '{"task": "exit", "code": $}'),
    ("/api/tasks/run", '{"task": "sleep", "seconds": $, "timeout": 1}'),
    ("/api/tasks/run", '{"task": "sleep", "seconds": 0, "timeout": $}'),
]
# Paths whose last segment or two is a name or an id ("@").
NAMED_PATHS = [
    ("GET", "/api/counters/@"),
    ("POST", "/api/counters/@/incr"),
    ("POST", "/api/locked-increment/@"),
    ("GET", "/api/exports/@"),
    ("GET", "/api/exports/@/download"),
]


def at(path: str, name: str | None = None) -> str:
    return path.replace("@", name or unique("hostile"))


def counter(client: Client, name: str) -> int:
    return assert_json(client.get(f"/api/counters/{name}"), 200)["value"]


def assert_still_serves(client: Client) -> None:
    """The service answers a real request, with the backend, right after."""
    name = unique("after")
    body = assert_json(client.post(f"/api/counters/{name}/incr", json={"by": 2}), 200)
    assert body == {"name": name, "value": 2}, body
    assert_json(client.get("/healthz"), 200)


def assert_refused(resp, status: int | None = None, codes=None) -> dict:
    """A 4xx JSON error (of `status` and `codes` when given) with a short message."""
    assert 400 <= resp.status_code < 500, describe(resp)
    error = assert_error(resp, status or resp.status_code, codes)
    assert len(error["message"]) <= MAX_MESSAGE_CHARS, describe(resp)
    return error


def send_raw(client: Client, request: bytes) -> RawResponse:
    """Send bytes as they are (chunked framing, conflicting headers) and read the answer."""
    parts = urlsplit(client.base_url)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
        resp.begin()
        return RawResponse(
            method=request.split(b" ", 1)[0].decode(),
            url=client.base_url + request.split(b" ", 2)[1].decode(),
            status_code=resp.status,
            headers={k.lower(): v for k, v in resp.getheaders()},
            content=resp.read(),
        )


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# -- deep nesting ------------------------------------------------------------


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [900, 5_000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_deep_nesting_is_400(client: Client, depth: int, kind: str) -> None:
    """Past the parser's depth: invalid_json. Just under it: a value of the wrong shape."""
    name = unique("deep")
    for path in BODY_PATHS:
        for body in (nested(depth, kind), '{"by": ' + nested(depth, kind) + "}"):
            resp = client.post(at(path, name), data=body.encode(), headers=JSON_HEADERS)
            assert_refused(resp, 400, SHAPE_CODES | {"unknown_task"})
    assert counter(client, name) == 0
    assert_still_serves(client)


# -- NaN, infinities and numbers past a double or an int ---------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "-NaN"])
@pytest.mark.parametrize(("path", "template"), NUMBER_FIELDS)
def test_nan_and_infinity_are_invalid_json(
    client: Client, path: str, template: str, literal: str
) -> None:
    body = template.replace("$", literal).encode()
    assert_refused(client.post(at(path), data=body, headers=JSON_HEADERS), 400, "invalid_json")


@pytest.mark.parametrize(
    "number",
    [
        "1e400",  # past a double: Python reads it as infinity
        "-1e400",
        "1e308",
        "9223372036854775808",  # 2**63
        "-9223372036854775809",
        "18446744073709551616",  # 2**64
        "1" + "0" * 5000,  # past Python's 4300-digit conversion limit
        "0." + "0" * 5000 + "1",
        "1e-400",  # rounds to 0, fine for some fields: refused or accepted, never a 500
    ],
    ids=["1e400", "-1e400", "1e308", "2^63", "-2^63-1", "2^64", "5000 digits", "tiny", "1e-400"],
)
@pytest.mark.parametrize(("path", "template"), NUMBER_FIELDS)
def test_numbers_out_of_every_range_are_refused(
    client: Client, path: str, template: str, number: str
) -> None:
    resp = client.post(at(path), data=template.replace("$", number).encode(), headers=JSON_HEADERS)
    if resp.status_code < 300 and number in {"1e-400", "0." + "0" * 5000 + "1"}:
        return  # zero, or nearly: a valid value for some fields
    assert_refused(resp, 400, SHAPE_CODES)


def test_whole_numbers_written_as_floats_mean_the_integer(client: Client) -> None:
    """JSON has one number type: 3.0 is the integer 3, and means it everywhere."""
    exit_body = b'{"task": "exit", "code": 3.0}'
    result = assert_json(client.post("/api/tasks/run", data=exit_body, headers=JSON_HEADERS), 200)
    assert result["returncode"] == 3, result
    name = unique("float")
    incr = client.post(f"/api/counters/{name}/incr", data=b'{"by": 2.0}', headers=JSON_HEADERS)
    assert assert_json(incr, 200)["value"] == 2
    made = client.post(
        "/api/exports", data=b'{"size_bytes": 10.0, "label": "f"}', headers=JSON_HEADERS
    )
    assert assert_json(made, 201)["size"] == 10
    held = client.post(
        f"/api/locked-increment/{name}", data=b'{"hold_ms": 0.0}', headers=JSON_HEADERS
    )
    assert assert_json(held, 200)["value"] == 1


# -- huge values -------------------------------------------------------------

HUGE = "x" * 900_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/counters/@/incr", {"by": HUGE}),
        ("/api/exports", {"size_bytes": 10, "label": HUGE}),
        ("/api/tasks/run", {"task": "echo", "text": HUGE}),
        ("/api/tasks/run", {"task": HUGE}),
        ("/api/tasks/run", {"task": "exit", "code": 0, HUGE: 1}),
        ("/api/exports", [1] * 300_000),
    ],
    ids=["by", "label", "text", "task", "key", "array"],
)
def test_huge_values_are_refused_without_being_echoed(client: Client, path: str, body) -> None:
    assert_refused(client.post(at(path), json=body), 400, SHAPE_CODES | {"unknown_task"})
    assert_still_serves(client)


def test_huge_names_and_headers_are_refused(client: Client) -> None:
    assert_refused(client.raw("GET", "/api/counters/" + "a" * 4000), 400, "invalid_name")
    # Longer than nginx's header buffers (8 KiB): 414 from nginx, in JSON.
    assert_refused(client.raw("GET", "/api/counters/" + "a" * 20_000), 414)
    name = unique("key")
    for key in ("k" * 65, "k" * 10_000):
        resp = client.raw(
            "POST", f"/api/counters/{name}/incr", b'{"by": 1}', {"Idempotency-Key": key}
        )
        assert_refused(resp)
    assert counter(client, name) == 0
    assert_still_serves(client)


# -- control characters and CRLF ---------------------------------------------

CONTROL = ["%00", "%01", "%09", "%0A", "%0D", "%0D%0A", "%1B", "%7F", "%C2%85", "%E2%80%A8"]


@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize(("method", "path"), NAMED_PATHS)
def test_control_characters_in_names_and_ids_are_refused(
    client: Client, method: str, path: str, char: str
) -> None:
    resp = client.raw(method, at(path, f"a{char}b"), b"{}" if method == "POST" else None)
    assert_refused(resp)


@pytest.mark.parametrize(("method", "path"), NAMED_PATHS)
def test_crlf_in_a_path_never_becomes_a_header(client: Client, method: str, path: str) -> None:
    raw = at(path, "a%0D%0AX-Injected:%20yes%0D%0A%0D%0Ab")
    resp = client.raw(method, raw, b"{}" if method == "POST" else None)
    assert_refused(resp)
    assert "x-injected" not in resp.headers, resp.headers
    assert_still_serves(client)


@pytest.mark.parametrize(
    "label",
    ["a\r\nX-Injected: yes", "a\rb", "a\nb", "a\x00b", "a\x1b[31mb", "a\u2028b", 'a"; x="y'],
    ids=repr,
)
def test_control_characters_in_labels_are_refused(client: Client, label: str) -> None:
    # The label becomes a file name and a Content-Disposition header: refused whole.
    assert_refused(client.post("/api/exports", json={"size_bytes": 10, "label": label}), 400)


def test_control_characters_reach_a_child_verbatim_and_nul_is_refused(client: Client) -> None:
    text = "".join(chr(c) for c in range(1, 32)) + "\x7f\x1b[2J\x1b]0;title\x07\u2028\u0085"
    body = assert_json(client.post("/api/tasks/run", json={"task": "echo", "text": text}), 200)
    assert body["stdout"] == text + "\n", body
    for text in ("\x00", "a\x00b", "\x00" * 1000):
        resp = client.post("/api/tasks/run", json={"task": "echo", "text": text})
        assert_refused(resp, 400, SHAPE_CODES)
    assert_still_serves(client)


@pytest.mark.parametrize(
    "key",
    [
        "a b",
        "a\tb",
        # gunicorn refuses control characters in any header value (RFC 9110 5.5), which
        # nginx lets through: gunicorn.conf.py makes its refusal JSON too.
        "a\x01b",
        "a\x7fb",
    ],
    ids=repr,
)
def test_control_characters_in_an_idempotency_key_are_refused(client: Client, key: str) -> None:
    name = unique("ctlkey")
    request = request_bytes(
        "POST",
        f"/api/counters/{name}/incr",
        {"Idempotency-Key": key, "Content-Type": "application/json", "Content-Length": "2"},
        b"{}",
    )
    assert_refused(send_raw(client, request))
    assert counter(client, name) == 0


def test_a_request_line_between_gunicorns_limit_and_nginxs_is_refused_in_json(
    client: Client,
) -> None:
    # gunicorn's default limit_request_line is 4094 bytes and nginx passes lines up to
    # 8 KiB: gunicorn.conf.py raises gunicorn's limits above nginx's.
    assert_refused(client.raw("GET", "/api/counters/" + "a" * 6000))


# -- traversal ids -----------------------------------------------------------

TRAVERSALS = [
    "..%5C..%5Cetc%5Cpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "%C0%AE%C0%AE%C0%AFetc%C0%AFpasswd",
    "%2Fetc%2Fpasswd",
    "....%2F%2F....%2F%2Fetc%2Fpasswd",
    "..%00",
    "~root",
]


@pytest.mark.parametrize("raw_id", TRAVERSALS)
@pytest.mark.parametrize(("method", "path"), NAMED_PATHS)
def test_traversal_names_and_ids_are_refused(
    client: Client, method: str, path: str, raw_id: str
) -> None:
    resp = client.raw(method, at(path, raw_id), b"{}" if method == "POST" else None)
    assert_refused(resp)
    assert b"root:" not in resp.content, describe(resp)


@pytest.mark.parametrize(
    "raw_path",
    [
        "/_internal/exports/%2e%2e/%2e%2e/etc/passwd",
        "/_internal/exports/..%2f..%2fetc%2fpasswd",
        "/_internal/error",
        "/static/..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_traversal_through_nginx_locations_is_refused(client: Client, raw_path: str) -> None:
    resp = client.raw("GET", raw_path)
    assert_refused(resp)
    assert b"root:" not in resp.content, describe(resp)


# -- oversize and chunked bodies ---------------------------------------------


@pytest.mark.parametrize("path", BODY_PATHS)
def test_oversize_bodies_are_413_on_every_endpoint(client: Client, path: str) -> None:
    name = unique("big")
    big = b'{"by": 1, "pad": "' + b"x" * (1 << 20) + b'"}'
    assert_refused(client.post(at(path, name), data=big, headers=JSON_HEADERS), 413)
    assert counter(client, name) == 0


def chunked(body: bytes, size: int = 4096) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_a_chunked_body_is_read_whole(client: Client) -> None:
    name = unique("chunked")
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    body = chunked(b'{"by": ' + b" " * 10_000 + b"7}", size=1000)
    resp = send_raw(client, request_bytes("POST", f"/api/counters/{name}/incr", headers, body))
    assert assert_json(resp, 200)["value"] == 7


def test_an_oversize_chunked_body_is_413(client: Client) -> None:
    name = unique("chunked")
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    body = chunked(b'{"by": 1, "pad": "' + b"x" * (2 << 20) + b'"}', size=1 << 16)
    resp = send_raw(client, request_bytes("POST", f"/api/counters/{name}/incr", headers, body))
    assert_refused(resp, 413)
    assert counter(client, name) == 0
    assert_still_serves(client)


def test_an_oversize_body_is_refused_before_it_is_sent(client: Client) -> None:
    """With Expect: 100-continue, nginx answers 413 on the headers alone."""
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(64 << 20),
        "Expect": "100-continue",
    }
    resp = send_raw(client, request_bytes("POST", f"/api/counters/{unique('e')}/incr", headers))
    assert_refused(resp, 413)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        # Both framings at once: the classic request-smuggling setup.
        ({"Content-Length": "9", "Transfer-Encoding": "chunked"}, b'9\r\n{"by": 1}\r\n0\r\n\r\n'),
        ({"Transfer-Encoding": "chunked"}, b'zz\r\n{"by": 1}\r\n0\r\n\r\n'),
        ({"Transfer-Encoding": "chunked"}, b'-9\r\n{"by": 1}\r\n0\r\n\r\n'),
        ({"Content-Length": "9", "content-length": "10"}, b'{"by": 1} '),
        ({"Content-Length": "-1"}, b""),
    ],
    ids=["cl-and-te", "bad-chunk-size", "negative-chunk", "two-lengths", "cl-negative"],
)
def test_ambiguous_framing_is_refused(client: Client, headers: dict, body: bytes) -> None:
    name = unique("frame")
    request = request_bytes("POST", f"/api/counters/{name}/incr", headers, body)
    assert_refused(send_raw(client, request))
    assert counter(client, name) == 0
    assert_still_serves(client)


def test_an_unknown_transfer_coding_is_501_in_json(client: Client) -> None:
    """RFC 9112 (6.1): a transfer coding the server does not know is 501 Not
    Implemented; nginx answers it, and nothing reaches a worker."""
    name = unique("coding")
    headers = {"Transfer-Encoding": "gzip, chunked"}
    body = b'9\r\n{"by": 1}\r\n0\r\n\r\n'
    resp = send_raw(client, request_bytes("POST", f"/api/counters/{name}/incr", headers, body))
    assert_error(resp, 501, "not_implemented")
    assert counter(client, name) == 0
    assert_still_serves(client)
