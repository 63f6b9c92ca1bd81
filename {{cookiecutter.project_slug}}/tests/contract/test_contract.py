"""The HTTP contract, case by case, against this project's adapter in process.

Each case is (method, path, body, status, code or None); the same table runs
against every framework the template generates, so adapters cannot drift.
The black-box suite in tests/integration proves the multi-worker claims.
"""

from __future__ import annotations

import json

import pytest

from {{ cookiecutter.package_name }} import FRAMEWORK, openapi

ONE_MIB = 1 << 20
CASES = [
    ("GET", "/healthz", b"", 200, None),
    ("GET", "/readyz", b"", 200, None),
    ("GET", "/no/such/route", b"", 404, "not_found"),
    ("DELETE", "/healthz", b"", 405, "method_not_allowed"),
{% if cookiecutter.include_examples %}
    ("GET", "/api/worker", b"", 200, None),
    ("POST", "/api/counters/c1/incr", b"", 200, None),
    ("POST", "/api/counters/c1/incr", b'{"by": 5}', 200, None),
    ("GET", "/api/counters/c1", b"", 200, None),
    ("POST", "/api/counters/bad%20name/incr", b"", 400, "invalid_name"),
    ("POST", "/api/counters/c1/incr", b"{", 400, "invalid_json"),
    ("POST", "/api/counters/c1/incr", b'{"by": "1"}', 400, "invalid_request"),
    ("POST", "/api/counters/c1/incr", b'{"by": 1.5}', 400, "invalid_request"),
    ("GET", "/api/counters/c1/incr", b"", 405, "method_not_allowed"),
    ("POST", "/api/counters/c1/incr", b"x" * (ONE_MIB + 1), 413, "request_too_large"),
    ("POST", "/api/locked-increment/l1", b'{"hold_ms": 0}', 200, None),
    ("POST", "/api/locked-increment/l1", b'{"hold_ms": 5001}', 400, "invalid_request"),
    ("POST", "/api/exports", b'{"size_bytes": 0, "label": "a"}', 400, "invalid_request"),
    ("POST", "/api/exports", b'{"size_bytes": 10, "label": "a/b"}', 400, "invalid_request"),
    ("GET", "/api/exports/" + "0" * 32, b"", 404, "not_found"),
    ("GET", "/api/exports/not-an-id", b"", 404, "not_found"),
    ("GET", "/api/exports/" + "0" * 32 + "/download", b"", 404, "not_found"),
    ("POST", "/api/tasks/run", b'{"task": "rm"}', 400, "unknown_task"),
    ("POST", "/api/tasks/run", b'{"task": "exit", "code": 3}', 200, None),
    ("POST", "/api/tasks/run", b"[]", 400, "invalid_request"),
{% endif %}
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), CASES)
def test_contract_case(call, method, path, body, status, code):
    answer = call(method, path, body)
    assert answer.status == status, (answer.status, answer.content[:300])
    assert answer.headers["content-type"].split(";")[0] == "application/json"
    payload = answer.json()
    if code is None:
        assert "error" not in payload, payload
    else:
        assert payload["error"]["code"] == code, payload
        assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
        assert "Traceback" not in answer.content.decode(errors="replace")


def described() -> dict[tuple[str, str], dict]:
    """(method, path) -> operation, for every operation of the API's description."""
    return {
        (method.upper(), path): openapi.operation(item[method]["operationId"])
        for path, item in openapi.document()["paths"].items()
        for method in openapi.METHODS
        if method in item
    }


def test_the_app_serves_exactly_the_described_operations(mounted):
    # Read from the framework's own router: a route added without its description,
    # or a description left without its route, fails here.
    assert mounted == set(described())


@pytest.mark.parametrize(
    ("method", "path"),
    [key for key, operation in described().items() if "requestBody" in operation],
)
def test_a_body_with_a_property_it_does_not_describe_is_400(call, method, path):
    operation = described()[(method, path)]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    body = json.dumps({**example, "undescribed": 1}).encode()
    target = path.replace("{name}", "c1")
    answer = call(method, target, body)
    assert answer.status == 400, (answer.status, answer.content[:300])
    assert answer.json()["error"]["code"] == "invalid_request", answer.content[:300]
    # The example itself passes: the refusal is the extra property's.
    assert call(method, target, json.dumps(example).encode()).status < 300


def test_method_not_allowed_says_what_is(call):
    answer = call("DELETE", "/healthz")
    assert "GET" in answer.headers.get("allow", ""), answer.headers


def allowed(answer) -> set[str]:
    return {name.strip() for name in answer.headers.get("allow", "").split(",") if name.strip()}


def test_options_is_204_with_allow_and_no_body(call):
    answer = call("OPTIONS", "/healthz")
    assert answer.status == 204, (answer.status, answer.content[:300])
    assert answer.content == b""
    assert "content-type" not in answer.headers, answer.headers
    assert allowed(answer) == {"GET", "HEAD", "OPTIONS"}, answer.headers
    assert call("OPTIONS", "/no/such/route").status == 404


def test_trace_is_405_json_with_allow(call):
    # Behind nginx too: nginx refuses TRACE itself and hands it to the application.
    answer = call("TRACE", "/healthz")
    assert answer.status == 405, (answer.status, answer.content[:300])
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert allowed(answer) == {"GET", "HEAD", "OPTIONS"}, answer.headers
{% if cookiecutter.include_examples %}


def test_worker_names_the_framework_and_its_host(call):
    body = call("GET", "/api/worker").json()
    assert body["framework"] == FRAMEWORK
    assert set(body) == {"pid", "host", "worker_class", "framework"}


def test_a_download_is_handed_to_nginx_with_no_body(call):
    created = call("POST", "/api/exports", b'{"size_bytes": 100, "label": "rep.1"}')
    assert created.status == 201, created.content
    export = created.json()
    answer = call("GET", export["download_url"])
    assert answer.status == 200
    assert answer.content == b""
    assert answer.headers["x-accel-redirect"].startswith("/_internal/exports/")
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["content-disposition"] == 'attachment; filename="rep.1.txt"'


def test_an_exit_code_comes_back_exactly(call):
    body = call("POST", "/api/tasks/run", b'{"task": "exit", "code": 3}').json()
    assert body["returncode"] == 3 and body["timed_out"] is False
{% else %}


def test_only_health_routes_exist(mounted):
    paths = {path for _, path in mounted}
    assert paths == {"/healthz", "/readyz", "/api/openapi.json", "/metrics"}
    assert FRAMEWORK
{% endif %}
