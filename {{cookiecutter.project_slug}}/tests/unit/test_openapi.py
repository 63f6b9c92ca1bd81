"""The API's description: valid OpenAPI 3.1, served as read, and saying of each
answer what the error table (`http_errors`) makes of the toolkit's errors."""

import json
import re

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from {{ cookiecutter.package_name }} import health, inputs, openapi
from {{ cookiecutter.package_name }}.errors import InvalidInput
from {{ cookiecutter.package_name }}.http_errors import ERRORS, RETRY_AFTER, STATUS_CODES
from {{ cookiecutter.package_name }}.replies import Call

# Answers that are not errors, though their status is: /readyz's 503 says why.
NOT_ERRORS = {("readyz", "503")}
# Schema keywords that mean the same in draft 7 (fastjsonschema's, which gives
# inputs.py its verdicts) and in 2020-12 (OpenAPI 3.1's, jsonschema's there).
SAME_IN_DRAFT_7 = {
    "type", "properties", "required", "additionalProperties", "enum", "const",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "minProperties", "maxProperties",
    "oneOf", "anyOf", "allOf", "not", "title", "description", "examples",
    "discriminator",
}  # fmt: skip
# The errors that tell the client when to come back.
RETRY_AFTER_CODES = {ERRORS[error][1] for error in RETRY_AFTER}


@pytest.fixture(scope="module")
def document() -> dict:
    # What a client receives: the document as JSON, read back.
    return json.loads(openapi.document_bytes())


def operations():
    """(method, path, operation with its $refs inlined) for every operation."""
    for path, item in openapi.document()["paths"].items():
        for method in openapi.METHODS:
            if method in item:
                yield method, path, openapi.operation(item[method]["operationId"])


def test_the_document_is_valid_openapi_3_1(document):
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]


def test_the_handler_answers_the_document():
    reply = health.openapi(Call())
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert json.loads(reply.raw) == openapi.document()


def test_operation_ids_are_unique():
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)), ids
    assert sorted(ids) == sorted(openapi.operation_ids())


def test_path_parameters_are_the_paths_own():
    for _, path, operation in operations():
        declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert declared == re.findall(r"\{(\w+)\}", path), path


def test_a_part_cannot_describe_a_path_twice():
    base = {"paths": {"/a": {}}, "components": {"schemas": {"A": {}}}}
    assert set(openapi.merged(base, {"paths": {"/b": {}}})["paths"]) == {"/a", "/b"}
    with pytest.raises(ValueError, match="paths//a"):
        openapi.merged(base, {"paths": {"/a": {}}})
    with pytest.raises(ValueError, match="components/schemas/A"):
        openapi.merged(base, {"components": {"schemas": {"A": {}}}})


@pytest.mark.parametrize(
    "sample", ["a", "A.b_c-9", "x" * 64, "", "x" * 65, "a b", "a/b", "a\n", "ü"]
)
def test_the_name_pattern_says_what_check_name_does(sample):
    # The description's pattern (ECMA-262, anchored) and the toolkit's fullmatch agree.
    pattern = openapi.schema("#/components/schemas/Name")["pattern"]
    described = re.search(pattern, sample) is not None
    try:
        inputs.check_name(sample)
        checked = True
    except InvalidInput:
        checked = False
    assert described == checked, sample


def error_answers():
    for _, path, operation in operations():
        for status, answer in operation["responses"].items():
            if int(status) >= 400 and (operation["operationId"], status) not in NOT_ERRORS:
                yield path, int(status), answer


def codes_of(answer) -> set[str]:
    schema = answer["content"]["application/json"]["schema"]
    return set(schema["properties"]["error"]["properties"]["code"]["enum"])


def test_every_error_answer_has_the_one_error_shape():
    for path, status, answer in error_answers():
        schema = answer["content"]["application/json"]["schema"]
        assert schema["required"] == ["error"], (path, status)
        error = schema["properties"]["error"]
        assert set(error["required"]) == {"code", "message"}, (path, status)
        assert codes_of(answer), (path, status)


def test_each_code_is_answered_with_the_status_the_error_table_gives_it():
    status_of = {code: status for status, code in STATUS_CODES.items()}
    status_of.update({code: status for status, code in ERRORS.values()})
    for path, status, answer in error_answers():
        for code in codes_of(answer):
            # InvalidInput's own codes (invalid_json, invalid_name...) are its status.
            expected = status_of.get(code, ERRORS[InvalidInput][0])
            assert status == expected, (path, status, code)


def test_retry_after_is_required_where_every_error_of_the_status_sends_it():
    for path, status, answer in error_answers():
        codes = codes_of(answer)
        header = answer.get("headers", {}).get("Retry-After")
        if not codes & RETRY_AFTER_CODES:
            assert header is None, (path, status)
        else:
            # A 503 backend_unavailable sends none: a client must not count on one.
            assert header["required"] is (codes <= RETRY_AFTER_CODES), (path, status)


def test_a_body_can_be_too_large_and_a_path_unroutable():
    for _, path, operation in operations():
        responses = operation["responses"]
        assert ("413" in responses) == ("requestBody" in operation), path
        if "{" in path:
            assert "404" in responses, path


def keywords(schema: dict) -> set[str]:
    found = set(schema)
    for key, value in schema.items():
        if key in ("properties",):
            for subschema in value.values():
                found |= keywords(subschema)
        elif key in ("oneOf", "anyOf", "allOf"):
            for subschema in value:
                found |= keywords(subschema)
        elif key in ("additionalProperties", "not") and isinstance(value, dict):
            found |= keywords(value)
    return found


def test_request_schemas_keep_to_keywords_draft_7_reads_alike():
    for _, path, operation in operations():
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert keywords(schema) <= SAME_IN_DRAFT_7, (path, keywords(schema) - SAME_IN_DRAFT_7)


def test_every_request_body_is_a_closed_json_object_with_a_valid_example():
    for _, path, operation in operations():
        if "requestBody" not in operation:
            continue
        media = operation["requestBody"]["content"]
        assert set(media) == {"application/json"}, path
        schema = media["application/json"]["schema"]
        for branch in schema.get("oneOf", [schema]):
            assert branch["type"] == "object", path
            assert branch["additionalProperties"] is False, path
        # What the contract tests send, and clients copy: it must pass.
        example = media["application/json"]["example"]
        assert inputs.validate(operation["operationId"], example) == example
{% if cookiecutter.include_examples %}


def test_the_examples_declare_what_they_answer(document):
    paths = document["paths"]
    incr = openapi.operation("incr_counter")
    assert [p["name"] for p in incr["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    assert {"400", "404", "413", "422", "503"} <= set(incr["responses"])
    assert codes_of(incr["responses"]["400"]) == {
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
    download = openapi.operation("download_export")["responses"]["200"]
    assert set(download["content"]) == {"text/plain", "application/octet-stream"}
    assert download["headers"]["Content-Disposition"]["required"] is True
    readyz = openapi.operation("readyz")["responses"]
    assert readyz["503"]["content"]["application/json"]["schema"]["properties"]["status"] == {
        "const": "unavailable"
    }
{% else %}


def test_without_the_examples_only_health_the_description_and_metrics_are_described(document):
    assert set(document["paths"]) == {"/healthz", "/readyz", "/api/openapi.json", "/metrics"}
{% endif %}
