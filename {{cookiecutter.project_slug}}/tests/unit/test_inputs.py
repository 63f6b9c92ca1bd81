"""The toolkit's input rules: names, keys and JSON, refused before any work."""

import pytest

from {{ cookiecutter.package_name }} import inputs
from {{ cookiecutter.package_name }}.errors import InvalidInput


def code_of(call) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value.code


@pytest.mark.parametrize("name", ["a", "A-z_0.9", "x" * 64])
def test_names_in_range_pass(name):
    assert inputs.check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "ü", "a\n"])
def test_names_out_of_range_are_invalid_name(name):
    assert code_of(lambda: inputs.check_name(name)) == "invalid_name"


def test_an_idempotency_key_is_optional():
    assert inputs.check_idempotency_key(None) is None
    assert inputs.check_idempotency_key("retry-1") == "retry-1"


@pytest.mark.parametrize("key", ["", "a b", "x" * 65, "a\n"])
def test_an_idempotency_key_follows_the_name_rule(key):
    assert code_of(lambda: inputs.check_idempotency_key(key)) == "invalid_idempotency_key"


def test_empty_body_is_empty_object_only_where_allowed():
    assert inputs.parse_json(b"", empty_ok=True) == {}
    assert code_of(lambda: inputs.parse_json(b"")) == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"\xff\xfe",
        b"{'a': 1}",
        b"NaN-ish",
        b'{"by": NaN}',
        b'{"by": Infinity}',
        b'{"by": -Infinity}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_broken_json_is_invalid_json(raw):
    assert code_of(lambda: inputs.parse_json(raw)) == "invalid_json"


def test_an_operation_without_a_body_has_no_body_rule():
    # A view that reads no body must not call `body`: a mistake, not a 400.
    with pytest.raises(ValueError, match="takes no request body"):
        inputs.body("healthz", b"{}")
    with pytest.raises(KeyError):
        inputs.validate("no_such_operation", {})
