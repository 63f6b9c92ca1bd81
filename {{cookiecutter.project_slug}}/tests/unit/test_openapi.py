"""The API's description: valid OpenAPI 3.1, every route in it, and the very
schemas the handlers validate with (not copies that could drift)."""

import inspect
import json
import re
import sys

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from {{ cookiecutter.package_name }} import openapi, schemas
from {{ cookiecutter.package_name }}.errors import BackendUnavailable, Busy, InvalidInput
from {{ cookiecutter.package_name }}.replies import Call
from {{ cookiecutter.package_name }}.routes import ROUTES


@pytest.fixture(scope="module")
def document() -> dict:
    # What a client receives: the document as JSON, read back.
    return json.loads(json.dumps(openapi.document()))


def operation_of(document: dict, route) -> dict:
    return document["paths"][route.path][route.method.lower()]


def test_the_document_is_valid_openapi_3_1(document):
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"] == "3.1.0"


def test_every_route_is_described_once_and_nothing_else(document):
    described = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert described == {(route.method, route.path) for route in ROUTES}
    ids = [operation_of(document, route)["operationId"] for route in ROUTES]
    assert len(ids) == len(set(ids)), ids


def test_the_handler_answers_the_document():
    reply = openapi.openapi(Call())
    assert reply.status == 200
    assert reply.body == openapi.document()
    assert ("GET", "/api/openapi.json") in {(route.method, route.path) for route in ROUTES}


def test_path_parameters_are_the_routes_own(document):
    for route in ROUTES:
        declared = [
            p["name"]
            for p in operation_of(document, route).get("parameters", [])
            if p["in"] == "path"
        ]
        assert declared == route.params(), route.path


@pytest.mark.parametrize(
    "sample", ["a", "A.b_c-9", "x" * 64, "", "x" * 65, "a b", "a/b", "a\n", "ü"]
)
def test_the_name_pattern_says_what_check_name_does(sample):
    # The description's pattern (ECMA-262, anchored) and the toolkit's fullmatch agree.
    described = re.search(openapi.NAME["pattern"], sample) is not None
    try:
        schemas.check_name(sample)
        checked = True
    except InvalidInput:
        checked = False
    assert described == checked, sample


def modules_importing_validate() -> list:
    package = "{{ cookiecutter.package_name }}"
    return [
        module
        for name, module in sorted(sys.modules.items())
        if name.startswith(package + ".")
        and name != package + ".schemas"
        and getattr(module, "validate", None) is schemas.validate
    ]


def test_request_schemas_are_the_objects_the_handlers_validate_with(monkeypatch, document):
    """Each handler is called with a body no schema accepts; the schema it validates
    with is recorded, and must be the description's own object."""
    used: list[dict] = []

    def recording(body, schema):
        used.append(schema)
        return schemas.validate(body, schema)

    # Every module that validates a body with its own import of `validate`.
    for module in modules_importing_validate():
        monkeypatch.setattr(module, "validate", recording)

    with_bodies = [route for route in ROUTES if route.operation.request is not None]
    for route in with_bodies:
        used.clear()
        # Unwrapped: decorators such as the rate limit need a running service.
        handler = inspect.unwrap(route.handler)
        call = Call(
            params={name: "x" for name in route.params()},
            body=b'{"task": "exit", "unexpected": 1}',
        )
        with pytest.raises(InvalidInput):
            handler(call)
        assert used, f"{route.path} validated its body with no schema"
        request = route.operation.request
        alternatives = request.get("oneOf", [request])
        assert any(used[-1] is schema for schema in alternatives), route.path
        served = operation_of(document, route)["requestBody"]["content"]["application/json"]
        assert served["schema"] == json.loads(json.dumps(request)), route.path


def test_every_error_answer_has_the_one_error_shape(document):
    for route in ROUTES:
        for status, answer in operation_of(document, route)["responses"].items():
            if int(status) < 400 or int(status) in route.operation.other:
                continue
            schema = answer["content"]["application/json"]["schema"]
            assert schema["required"] == ["error"], (route.path, status)
            error = schema["properties"]["error"]
            assert set(error["required"]) == {"code", "message"}, (route.path, status)
            assert error["properties"]["code"]["enum"], (route.path, status)


def test_a_body_can_be_too_large_and_a_path_unroutable(document):
    for route in ROUTES:
        responses = operation_of(document, route)["responses"]
        assert ("413" in responses) == (route.operation.request is not None), route.path
        if route.params():
            assert "404" in responses, route.path


def test_rate_limited_answers_declare_retry_after(document):
    for route in ROUTES:
        answer = operation_of(document, route)["responses"].get("429")
        if answer is not None:
            assert answer["headers"]["Retry-After"]["required"] is True, route.path


def test_retry_after_is_required_where_every_error_of_the_status_sends_it():
    busy_only = openapi.Operation("busy", errors=(Busy,))
    with_outage = openapi.Operation("either", errors=(Busy, BackendUnavailable))
    header = "Retry-After"
    assert openapi._headers_of(503, busy_only)[header]["required"] is True
    # A 503 backend_unavailable sends none: a client must not count on one.
    assert openapi._headers_of(503, with_outage)[header]["required"] is False
{% if cookiecutter.include_examples %}


def test_the_examples_declare_what_they_answer(document):
    paths = document["paths"]
    incr = paths["/api/counters/{name}/incr"]["post"]
    assert [p["name"] for p in incr["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    assert {"400", "404", "413", "422", "503"} <= set(incr["responses"])
    codes_400 = incr["responses"]["400"]["content"]["application/json"]["schema"]
    assert set(codes_400["properties"]["error"]["properties"]["code"]["enum"]) == {
        "invalid_json",
        "invalid_request",
        "invalid_name",
        "invalid_idempotency_key",
    }
    for path in ("/api/locked-increment/{name}", "/api/exports", "/api/tasks/run"):
        assert "429" in paths[path]["post"]["responses"], path
    assert "409" in paths["/api/locked-increment/{name}"]["post"]["responses"]
    assert "507" in paths["/api/exports"]["post"]["responses"]
    assert "201" in paths["/api/exports"]["post"]["responses"]
    download = paths["/api/exports/{export_id}/download"]["get"]["responses"]["200"]
    assert set(download["content"]) == {"text/plain", "application/octet-stream"}
    assert download["headers"]["Content-Disposition"]["required"] is True
    readyz = paths["/readyz"]["get"]["responses"]
    assert readyz["503"]["content"]["application/json"]["schema"]["properties"]["status"] == {
        "const": "unavailable"
    }
{% else %}


def test_without_the_examples_only_health_the_description_and_metrics_are_described(document):
    assert set(document["paths"]) == {"/healthz", "/readyz", "/api/openapi.json", "/metrics"}
{% endif %}
