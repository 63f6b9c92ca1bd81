"""Schemathesis hooks for test_fuzz.py, loaded by `st run` (SCHEMATHESIS_HOOKS).

The fuzzer sends every operation, valid and invalid bodies alike; only how
long the valid waits last is shortened, so the run stays well under a minute.
A valid `hold_ms` (up to 5 s) or a sleep task's `timeout` (up to 60 s) keeps
a request busy that long by design, and a fuzzer picks the long ones often.
Each such value, when it is in its valid range, is lowered to a fraction of
a second: the request stays valid and still takes the path it would have
(the lock held then released, the child killed at its timeout), and a value
out of range is left untouched, so it is still refused. The full ranges are
proven elsewhere (test_lock_semantics.py, test_child_processes.py).
"""

from __future__ import annotations

from typing import Any

import schemathesis

# The longest wait a fuzzed request may ask for: a sleep's timeout, a lock's hold.
MAX_WAIT_SECONDS = 0.2
MAX_HOLD_MS = 200


def _in_range(value: Any, low: float, high: float) -> bool:
    # bool is an int in Python, but not a JSON number: the service refuses it.
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


@schemathesis.hook("map_case")
def shorten_waits(context: Any, case: Any) -> Any:
    body = case.body
    if not isinstance(body, dict):
        return case
    path = case.operation.path
    task, timeout, hold = body.get("task"), body.get("timeout"), body.get("hold_ms")
    # A sleep's child is killed at `timeout`, whatever `seconds` says.
    if path == "/api/tasks/run" and task == "sleep" and _in_range(timeout, 0.1, 60):
        body["timeout"] = min(timeout, MAX_WAIT_SECONDS)
    elif path == "/api/locked-increment/{name}" and _in_range(hold, 0, 5000):
        # Only a whole number is lowered (2.0 included): 2.5 is refused as it is.
        body["hold_ms"] = min(hold, MAX_HOLD_MS) if hold == int(hold) else hold
    return case
