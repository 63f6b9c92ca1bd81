"""The named tasks the example runs as child processes: argv built from validated data."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import openapi
from ..errors import InvalidInput

CHILD_SCRIPT = Path(__file__).with_name("childtasks.py")
# What a task's slot is called in a `busy` answer.
LONG_WORK = "child tasks"
# Tasks that name no timeout of their own get this one.
DEFAULT_TIMEOUT = 30.0


def check_known(document: object) -> None:
    """A request object naming no task the description knows is unknown_task,
    whatever else it holds (its shape is checked next, against that task's schema)."""
    if not isinstance(document, dict):
        return
    known = _known()
    task = document.get("task")
    if not isinstance(task, str) or task not in known:
        raise InvalidInput("unknown_task", f"The task must be one of: {', '.join(sorted(known))}.")


def _known() -> dict[str, str]:
    # The run_task body's discriminator: task name -> its schema.
    schema = openapi.operation("run_task")["requestBody"]["content"]["application/json"]["schema"]
    return schema["discriminator"]["mapping"]  # type: ignore[no-any-return]


def task_argv(request: dict) -> tuple[list[str], float]:
    """The argv and timeout for a validated task request (see the description's tasks)."""
    task = request["task"]
    base = [sys.executable, "-I", str(CHILD_SCRIPT), task]
    if task == "exit":
        # JSON Schema counts 3.0 as the integer 3; the child must read "3", not "3.0".
        return [*base, str(int(request["code"]))], DEFAULT_TIMEOUT
    if task == "echo":
        text = request["text"]
        if "\0" in text:
            raise InvalidInput("invalid_request", "text: must not contain a NUL character.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("invalid_request", "text: must be valid Unicode.") from None
        return [*base, text], DEFAULT_TIMEOUT
    return [*base, repr(float(request["seconds"]))], float(request["timeout"])
