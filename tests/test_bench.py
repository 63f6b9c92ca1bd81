"""`make bench` runs in every framework's generated project and writes its figures.

One short round (`--quick`: 1 s per measure, small files) proves that every
measure runs against real stacks and lands in var/bench/results.json and the
chart. Speed is never asserted here: a shared machine's figures are noise,
and the ratios mean something only in a full run.
"""

from __future__ import annotations

import json

import pytest

from conftest import Project, clean_env, questions

# Starting about ten stacks, one short round of every measure, and the chart.
BENCH_TIMEOUT = 600
MEASURES = {
    "downloads",
    "slow_clients",
    "overhead",
    "metrics",
    "counters",
    "locks",
    "recycling",
    "worker_classes",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", params=questions()["framework"])
def project(request, generate) -> Project:
    return generate(framework=request.param)


def test_quick_bench_writes_every_measure(project):
    project.install()
    project.make("bench", timeout=BENCH_TIMEOUT, env=clean_env(BENCH_ARGS="--quick"))
    out = project.path / "var" / "bench"
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True
    assert set(results["measures"]) == MEASURES
    for name, measure in results["measures"].items():
        assert measure["medians"], f"{name} recorded no figures"
    compared = {check["measure"] for check in results["checks"]}
    # Every measure but the worker classes compares against a reference; the classes
    # compare gthread with sync only where both can run (not aiohttp's app).
    assert compared >= MEASURES - {"worker_classes"}
    for check in results["checks"]:
        # None where no request was answered at all (the naive setup may answer none).
        assert check["ratio"] is None or check["ratio"] >= 0, check
    assert (out / "results.png").read_bytes().startswith(PNG_SIGNATURE)
