"""The example endpoints' input rules, as the API's description states them:
refused before any work, with their codes and a message that says where."""

import fastjsonschema
import pytest

from {{ cookiecutter.package_name }} import inputs, openapi
from {{ cookiecutter.package_name }}.errors import InvalidInput
from {{ cookiecutter.package_name }}.examples import tasks


def refusal(call) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value


def code_of(call) -> str:
    return refusal(call).code


@pytest.mark.parametrize(
    "body",
    [[], "1", {"by": "1"}, {"by": 1.5}, {"by": True}, {"by": 1_000_001}, {"other": 1}],
)
def test_wrong_increment_shapes_are_invalid_request(body):
    assert code_of(lambda: inputs.validate("incr_counter", body)) == "invalid_request"


def test_a_wrong_shape_says_where():
    error = refusal(lambda: inputs.validate("incr_counter", {"by": 1_000_001}))
    assert str(error).startswith("by: "), error


def test_a_refused_value_is_echoed_cut_short():
    label = "x" * 1_000_000
    error = refusal(lambda: inputs.validate("create_export", {"label": label, "size_bytes": 1}))
    assert str(error).startswith("label: ")
    assert len(str(error)) <= inputs.MESSAGE_CHARS + 3


def test_an_empty_body_is_an_empty_object_where_the_body_is_optional():
    assert inputs.body("incr_counter", b"") == {}
    assert inputs.body("locked_increment", b" \n") == {}
    assert code_of(lambda: inputs.body("create_export", b"")) == "invalid_json"
    assert code_of(lambda: inputs.body("run_task", b"")) == "invalid_json"


def test_body_parses_strictly_then_validates():
    assert inputs.body("incr_counter", b'{"by": 3}') == {"by": 3}
    assert code_of(lambda: inputs.body("incr_counter", b'{"by": NaN}')) == "invalid_json"
    assert code_of(lambda: inputs.body("incr_counter", b'{"by": "3"}')) == "invalid_request"


def test_export_needs_label_and_size():
    assert code_of(lambda: inputs.validate("create_export", {"label": "a"})) == "invalid_request"
    body = {"label": "a.b-c_1", "size_bytes": 2_147_483_648}
    assert inputs.validate("create_export", body) == body
    too_big = {"label": "a", "size_bytes": 2_147_483_649}
    assert code_of(lambda: inputs.validate("create_export", too_big)) == "invalid_request"


@pytest.mark.parametrize("label", ["a\n", "a\r\n", "\na", "a b", "", "x" * 65])
def test_a_label_is_refused_whole_even_before_a_final_newline(label):
    body = {"label": label, "size_bytes": 10}
    assert code_of(lambda: inputs.validate("create_export", body)) == "invalid_request"


def task_request(document):
    tasks.check_known(document)
    return inputs.validate("run_task", document)


def test_unknown_task_is_its_own_code():
    assert code_of(lambda: task_request({"task": "rm"})) == "unknown_task"
    assert code_of(lambda: task_request({"task": 1})) == "unknown_task"
    assert code_of(lambda: task_request({"code": 1})) == "unknown_task"
    assert code_of(lambda: task_request([])) == "invalid_request"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"task": "sleep", "seconds": 1, "timeout": 0.01}, "timeout: "),
        ({"task": "exit", "code": 256}, "code: "),
        ({"task": "echo"}, "body: "),
        ({"task": "exit", "code": 0, "text": "a"}, "body: "),
    ],
)
def test_a_task_is_checked_against_its_own_schema(body, where):
    # The discriminator picks the branch: the message names that task's field,
    # not oneOf's "is not valid under any of the given schemas".
    error = refusal(lambda: task_request(body))
    assert error.code == "invalid_request"
    assert str(error).startswith(where), error
    assert "any of the given schemas" not in str(error)


def test_without_the_unknown_check_a_stray_task_is_still_refused():
    error = refusal(lambda: inputs.validate("run_task", {"task": "rm"}))
    assert error.code == "invalid_request"
    assert str(error) == "task: must be one of: echo, exit, sleep."


def test_every_described_task_has_a_command():
    request = openapi.operation("run_task")["requestBody"]
    mapping = request["content"]["application/json"]["schema"]["discriminator"]["mapping"]
    samples = {"exit": {"code": 0}, "echo": {"text": "hi"}, "sleep": {"seconds": 0, "timeout": 1}}
    assert set(mapping) == set(samples)
    for task, fields in samples.items():
        argv, _ = tasks.task_argv(task_request({"task": task, **fields}))
        assert argv[3] == task


@pytest.mark.parametrize(
    ("op_id", "body"),
    [
        ("incr_counter", {"by": 3.0}),
        ("incr_counter", {"by": -0.0}),
        ("incr_counter", {"by": True}),
        ("incr_counter", {"by": 1e300}),
        ("incr_counter", {"by": 1_000_000}),
        ("incr_counter", None),
        ("create_export", {"size_bytes": 10.0, "label": "a"}),
        ("create_export", {"size_bytes": 2_147_483_648, "label": "x" * 64}),
        ("create_export", {"size_bytes": 1, "label": "a\n"}),
        ("create_export", {"size_bytes": 1, "label": "ü"}),
        ("run_task", {"task": "exit", "code": 255.0}),
        ("run_task", {"task": "echo", "text": "é" * 1000}),
        ("run_task", {"task": "echo", "text": "é" * 1001}),
        ("run_task", {"task": "echo", "text": "a\0"}),
        ("run_task", {"task": "sleep", "seconds": 0, "timeout": 0.1}),
        ("run_task", {"task": "sleep", "seconds": 0, "timeout": 0.09}),
    ],
)
def test_the_compiled_check_and_jsonschema_agree(op_id, body):
    # fastjsonschema gives the verdict and jsonschema the refusal's sentence: a
    # body one passes and the other refuses would be let through, or refused
    # without a reason.
    schema = inputs._request(op_id).schema_for(body)
    compiled = True
    try:
        schema._passes(body)
    except fastjsonschema.JsonSchemaValueException:
        compiled = False
    assert compiled == schema._explains.is_valid(body), body


def test_a_nul_character_never_reaches_a_child():
    assert code_of(lambda: tasks.task_argv({"task": "echo", "text": "a\0b"})) == "invalid_request"


def test_task_text_is_one_argv_entry():
    argv, _ = tasks.task_argv({"task": "echo", "text": "$(id); rm -rf /"})
    assert argv[-1] == "$(id); rm -rf /"
