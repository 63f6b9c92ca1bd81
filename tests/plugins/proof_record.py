"""A pytest plugin loaded into a generated project's own runs (`-p proof_record`).

It appends one JSON line per test to the file PROOF_RECORD names: the test's
id, its outcome, the project it ran in (PROOF_VARIANT) and the stage (unit,
contract, or integration with its backend); and one line per run with the
run's length. The template's session reads them into the table of every proof
against the variants it ran on (tests/proofs.py). A test that -m left out is
recorded as deselected.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

RECORD = os.environ.get("PROOF_RECORD", "")
VARIANT = os.environ.get("PROOF_VARIANT", "")
_started = time.monotonic()
# This run's stage, from the path it was given (pytest_configure).
_stage = "tests"


def pytest_configure(config: pytest.Config) -> None:
    global _stage
    parts = [Path(arg).parts for arg in config.args]
    if parts and len(parts[0]) > 1 and parts[0][0] == "tests":
        _stage = parts[0][1]
    if _stage == "integration":
        _stage = f"integration-{os.environ.get('STACK_BACKEND', '').strip() or 'redis'}"


def _write(**fields: object) -> None:
    if not RECORD:
        return
    line = json.dumps({"variant": VARIANT, "stage": _stage, **fields})
    with open(RECORD, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        _write(test=item.nodeid, outcome="deselected")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _write(test=report.nodeid, outcome=report.outcome)
    elif report.when == "teardown" and report.failed:
        _write(test=report.nodeid, outcome="failed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write(run_seconds=round(time.monotonic() - _started, 1), status=exitstatus)
