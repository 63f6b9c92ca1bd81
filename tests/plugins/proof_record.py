"""A pytest plugin loaded into a generated project's own runs (`-p proof_record`).

It appends one JSON line per test to the file PROOF_RECORD names: the test's
id, its outcome, the project it ran in (PROOF_VARIANT) and the stage (unit,
contract, or integration with its backend); and one line per run with the
run's length. The template's session reads them into the table of every proof
against the variants it ran on (tests/proofs.py). Deselected tests are recorded
with the marker expression that left them out.
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


def _stage(config: pytest.Config) -> str:
    parts = [Path(arg).parts for arg in config.args]
    kind = parts[0][1] if parts and len(parts[0]) > 1 and parts[0][0] == "tests" else "tests"
    if kind == "integration":
        return f"integration-{os.environ.get('STACK_BACKEND', '').strip() or 'redis'}"
    return kind


def _write(config: pytest.Config, **fields: object) -> None:
    if not RECORD:
        return
    line = json.dumps({"variant": VARIANT, "stage": _stage(config), **fields})
    with open(RECORD, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        _write(item.config, test=item.nodeid, outcome="deselected")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG[0]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _write(config, test=report.nodeid, outcome=report.outcome)
    elif report.when == "teardown" and report.failed:
        _write(config, test=report.nodeid, outcome="failed")


_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG.append(config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write(session.config, run_seconds=round(time.monotonic() - _started, 1), status=exitstatus)
