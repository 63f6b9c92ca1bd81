import pytest

from {{ cookiecutter.package_name }} import schemas
from {{ cookiecutter.package_name }}.errors import InvalidInput


def code_of(call) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value.code


@pytest.mark.parametrize("name", ["a", "A-z_0.9", "x" * 64])
def test_names_in_range_pass(name):
    assert schemas.check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "ü", "a\n"])
def test_names_out_of_range_are_invalid_name(name):
    assert code_of(lambda: schemas.check_name(name)) == "invalid_name"


def test_empty_body_is_empty_object_only_where_allowed():
    assert schemas.parse_json(b"", empty_ok=True) == {}
    assert code_of(lambda: schemas.parse_json(b"")) == "invalid_json"


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
    assert code_of(lambda: schemas.parse_json(raw)) == "invalid_json"


def test_a_wrong_shape_is_invalid_request_and_says_where():
    schema = schemas.object_schema({"by": schemas.integer(0, 10)})
    with pytest.raises(InvalidInput) as caught:
        schemas.validate({"by": 11}, schema)
    assert caught.value.code == "invalid_request"
    assert str(caught.value).startswith("by: ")
