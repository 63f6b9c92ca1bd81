"""The example endpoints' input rules: refused before any work, with their codes."""

import pytest

from {{ cookiecutter.package_name }}.errors import InvalidInput
from {{ cookiecutter.package_name }}.examples import schemas, tasks
from {{ cookiecutter.package_name }}.schemas import validate


def code_of(call) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value.code


@pytest.mark.parametrize(
    "body",
    [[], "1", {"by": "1"}, {"by": 1.5}, {"by": True}, {"by": 1_000_001}, {"other": 1}],
)
def test_wrong_increment_shapes_are_invalid_request(body):
    assert code_of(lambda: validate(body, schemas.INCREMENT)) == "invalid_request"


def test_export_needs_label_and_size():
    assert code_of(lambda: validate({"label": "a"}, schemas.EXPORT)) == "invalid_request"
    body = {"label": "a.b-c_1", "size_bytes": 2_147_483_648}
    assert validate(body, schemas.EXPORT) == body
    too_big = {"label": "a", "size_bytes": 2_147_483_649}
    assert code_of(lambda: validate(too_big, schemas.EXPORT)) == "invalid_request"


@pytest.mark.parametrize("label", ["a\n", "a\r\n", "\na", "a b", "", "x" * 65])
def test_a_label_is_refused_whole_even_before_a_final_newline(label):
    body = {"label": label, "size_bytes": 10}
    assert code_of(lambda: validate(body, schemas.EXPORT)) == "invalid_request"


def test_unknown_task_is_its_own_code():
    assert code_of(lambda: schemas.task_request({"task": "rm"})) == "unknown_task"
    assert code_of(lambda: schemas.task_request({"task": 1})) == "unknown_task"
    assert code_of(lambda: schemas.task_request([])) == "invalid_request"
    bad_sleep = {"task": "sleep", "seconds": 1, "timeout": 0.01}
    assert code_of(lambda: schemas.task_request(bad_sleep)) == "invalid_request"


def test_a_nul_character_never_reaches_a_child():
    assert code_of(lambda: tasks.task_argv({"task": "echo", "text": "a\0b"})) == "invalid_request"


def test_task_text_is_one_argv_entry():
    argv, _ = tasks.task_argv({"task": "echo", "text": "$(id); rm -rf /"})
    assert argv[-1] == "$(id); rm -rf /"
