"""Bad input gets a 4xx JSON error of the one shape, never a traceback or an HTML page."""

from __future__ import annotations

import json
import uuid

import pytest
from client import SHAPE_CODES, Client, assert_error, assert_json, unique

# Run on each framework's default worker class only by the template's CI, because
# every answer is the app's validation, the same code under every class.
pytestmark = pytest.mark.same_for_every_worker_class

JSON_HEADERS = {"Content-Type": "application/json"}
NOT_JSON = [b"{not json", b'{"by": 1', b"\xff\xfe\x00garbage", b"{'by': 1}"]


def counter_value(client: Client, name: str) -> int:
    return assert_json(client.get(f"/api/counters/{name}"), 200)["value"]


@pytest.mark.parametrize("body", NOT_JSON)
def test_invalid_json_is_400_invalid_json(client: Client, body: bytes) -> None:
    name = unique("badjson")
    for path in (
        f"/api/counters/{name}/incr",
        f"/api/locked-increment/{name}",
        "/api/exports",
        "/api/tasks/run",
    ):
        resp = client.post(path, data=body, headers=JSON_HEADERS)
        assert_error(resp, 400, "invalid_json")
    assert counter_value(client, name) == 0


@pytest.mark.parametrize(
    "body",
    [
        [1],
        "by",
        5,
        {"by": "1"},
        {"by": 1.5},
        {"by": True},
        {"by": 1_000_001},
        {"by": -1_000_001},
        {"by": 10**30},
    ],
    ids=repr,
)
def test_wrong_shape_for_incr_is_400(client: Client, body: object) -> None:
    name = unique("badshape")
    resp = client.post(f"/api/counters/{name}/incr", data=json.dumps(body), headers=JSON_HEADERS)
    assert_error(resp, 400, SHAPE_CODES)
    assert counter_value(client, name) == 0


def test_by_limits_are_accepted(client: Client) -> None:
    name = unique("limits")
    for by in (1_000_000, -1_000_000, 0):
        assert_json(client.post(f"/api/counters/{name}/incr", json={"by": by}), 200)
    assert counter_value(client, name) == 0


@pytest.mark.parametrize("body", [[], "x", 1, None], ids=repr)
def test_wrong_shape_elsewhere_is_400(client: Client, body: object) -> None:
    data = json.dumps(body)
    paths = ["/api/exports", "/api/tasks/run"]
    if body is not None:  # whether a null body means "no body" the contract leaves open
        paths.append(f"/api/locked-increment/{unique('shape')}")
    for path in paths:
        assert_error(client.post(path, data=data, headers=JSON_HEADERS), 400, SHAPE_CODES)


BAD_NAMES = [
    "x" * 65,
    "a%20b",
    "z%C3%A4hler",
    "a:b",
    "a*b",
    "a+b",
    "a@b",
    "a~b",
    "a;b",
    "a,b",
    "a%25b",
    "%E2%9C%93",
]


@pytest.mark.parametrize("raw_name", BAD_NAMES)
def test_invalid_counter_names_are_400(client: Client, raw_name: str) -> None:
    assert_error(client.raw("GET", f"/api/counters/{raw_name}"), 400, "invalid_name")
    resp = client.raw(
        "POST", f"/api/counters/{raw_name}/incr", body=b'{"by": 1}', headers=JSON_HEADERS
    )
    assert_error(resp, 400, "invalid_name")


def test_longest_and_odd_valid_names_work(client: Client) -> None:
    tag = uuid.uuid4().hex
    for name in ((tag * 2)[:64], f"A.b_c-{tag[:8]}", f"..{tag[:6]}", f"-{tag[:6]}"):
        body = assert_json(client.post(f"/api/counters/{name}/incr"), 200)
        assert (body["name"], body["value"]) == (name, 1), body


@pytest.mark.parametrize(
    "path",
    ["/api/counters/a%2Fb", "/api/counters/a/b/incr", "/api/counters/", "/api/counters//incr"],
)
def test_names_that_cannot_route_are_400_or_404(client: Client, path: str) -> None:
    for method in ("GET", "POST"):
        resp = client.raw(method, path)
        assert resp.status_code in (400, 404), f"{method} {path} -> {resp.status_code}"
        assert_error(resp, resp.status_code)


def test_body_over_the_limit_is_413_from_nginx(client: Client) -> None:
    big = json.dumps({"size_bytes": 10, "label": "big", "pad": "x" * (2 << 20)}).encode()
    resp = client.post("/api/exports", data=big, headers=JSON_HEADERS)
    assert_error(resp, 413)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/no-such-route-{tag}"),
        ("GET", "/api/no-such-route-{tag}"),
        ("POST", "/api/no-such-route-{tag}"),
        ("GET", "/api/counters/{tag}/incr/extra"),
        ("GET", "/api/exports/{tag}/download/extra"),
    ],
)
def test_unknown_routes_are_404_json(client: Client, method: str, path: str) -> None:
    resp = client.request(method, path.replace("{tag}", uuid.uuid4().hex))
    assert_error(resp, 404)
