import pytest

from {{ cookiecutter.package_name }} import schemas
from {{ cookiecutter.package_name }}.errors import ApiError


def code_of(call) -> str:
    with pytest.raises(ApiError) as caught:
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


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"{'a': 1}", b"NaN-ish"])
def test_broken_json_is_invalid_json(raw):
    assert code_of(lambda: schemas.parse_json(raw)) == "invalid_json"


@pytest.mark.parametrize(
    "body",
    [[], "1", {"by": "1"}, {"by": 1.5}, {"by": True}, {"by": 1_000_001}, {"other": 1}],
)
def test_wrong_increment_shapes_are_invalid_request(body):
    assert code_of(lambda: schemas.validate(body, schemas.INCREMENT)) == "invalid_request"


def test_export_needs_label_and_size():
    assert code_of(lambda: schemas.validate({"label": "a"}, schemas.EXPORT)) == "invalid_request"
    body = {"label": "a.b-c_1", "size_bytes": 2_147_483_648}
    assert schemas.validate(body, schemas.EXPORT) == body
    too_big = {"label": "a", "size_bytes": 2_147_483_649}
    assert code_of(lambda: schemas.validate(too_big, schemas.EXPORT)) == "invalid_request"


def test_unknown_task_is_its_own_code():
    assert code_of(lambda: schemas.task_request({"task": "rm"})) == "unknown_task"
    assert code_of(lambda: schemas.task_request({"task": 1})) == "unknown_task"
    assert code_of(lambda: schemas.task_request([])) == "invalid_request"
    bad_sleep = {"task": "sleep", "seconds": 1, "timeout": 0.01}
    assert code_of(lambda: schemas.task_request(bad_sleep)) == "invalid_request"
