"""What this session proved, and what it cost: the two tables printed at its end.

The proof table lists every test of the generated projects' own suites against
the variants (framework x worker class, and each framework without examples)
it ran on, and in which stage; a reader of the CI log alone can see that no
proof was dropped. The stage table sums each stage's time: its runs overlap
(tests/background.py), so the sum is more than the session's wall time.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

import pytest

# The records directory of this session (conftest's proof_records fixture).
RECORDS: list[Path] = []
# Stage -> the seconds of each run of it.
_stages: dict[str, list[float]] = defaultdict(list)
_guard = threading.Lock()

# A cell's letter per stage where the proof passed; lower case where it was skipped.
STAGE_LETTERS = {
    "unit": "U",
    "contract": "C",
    "integration-redis": "R",
    "integration-embedded": "E",
}
DESELECTED = "~"
FAILED = "X"
LEGEND = (
    "U unit, C contract, R integration with Redis, E integration embedded: passed there; "
    "lower case: skipped there (the test says why); "
    f"{DESELECTED}: left out as the same for every worker class (it ran on the default class); "
    f"{FAILED}: failed; blank: not in that variant"
)


def note_stage(stage: str, seconds: float) -> None:
    with _guard:
        _stages[stage].append(seconds)


def note_duration(report: pytest.TestReport) -> None:
    """A test of this session's own, counted under its module's stage."""
    if "background" in report.keywords:
        return  # its run is counted by the run itself
    module = Path(report.nodeid.split("::", 1)[0]).stem.removeprefix("test_")
    with _guard:
        if report.when == "setup":
            _stages[module].append(0.0)
        if _stages[module]:
            _stages[module][-1] += report.duration


def records() -> list[dict]:
    if not RECORDS:
        return []
    found = []
    for path in sorted(RECORDS[0].glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(json.loads(line))
    return found


def proof_cells(found: list[dict]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(variants in the order they ran, test id -> variant -> cell)."""
    variants: list[str] = []
    cells: dict[str, dict[str, str]] = defaultdict(lambda: defaultdict(str))
    for record in found:
        if "test" not in record:
            continue
        variant = record["variant"]
        if variant not in variants:
            variants.append(variant)
        letter = STAGE_LETTERS.get(record["stage"], "?")
        symbol = {
            "passed": letter,
            "skipped": letter.lower(),
            "deselected": DESELECTED,
        }.get(record["outcome"], FAILED)
        if symbol not in cells[record["test"]][variant]:
            cells[record["test"]][variant] += symbol
    return variants, cells


def print_tables(reporter) -> None:
    found = records()
    if found:
        variants, cells = proof_cells(found)
        width = max(len(test) for test in cells)
        columns = [f"{index:>3}" for index in range(1, len(variants) + 1)]
        reporter.write_sep("=", "proofs of the generated projects, by variant")
        for index, variant in enumerate(variants, 1):
            reporter.write_line(f"{index:>3}: {variant}")
        reporter.write_line(LEGEND)
        reporter.write_line(f"{'test':<{width}} " + " ".join(columns))
        for test in sorted(cells):
            row = " ".join(f"{cells[test].get(v, ''):>3}" for v in variants)
            reporter.write_line(f"{test:<{width}} {row}")
        for record in found:
            if "run_seconds" in record:
                note_stage(record["stage"], record["run_seconds"])
    with _guard:
        stages = {name: list(times) for name, times in _stages.items()}
    if stages:
        reporter.write_sep("=", "stage times (s): runs overlap, so the sum exceeds the wall time")
        reporter.write_line(f"{'stage':<22} {'runs':>5} {'sum':>8} {'longest':>8}")
        for name, times in sorted(stages.items(), key=lambda item: -sum(item[1])):
            line = f"{name:<22} {len(times):>5} {sum(times):>8.1f} {max(times):>8.1f}"
            reporter.write_line(line)
