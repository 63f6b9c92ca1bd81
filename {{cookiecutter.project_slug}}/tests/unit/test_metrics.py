"""Metrics without a server: route labels, the multiprocess directory, and the add-up.

The black-box proofs (several gunicorn workers behind nginx) are in
tests/integration/test_metrics.py; these pin the pieces they rest on.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }} import metrics, metrics_files, routes
from {{ cookiecutter.package_name }}.errors import BackendUnavailable
from {{ cookiecutter.package_name }}.replies import error_reply
from stack.errors import StackError
from stack.nginx import metrics_access

SRC = Path(__file__).resolve().parents[2] / "src"


def test_route_labels_are_patterns_and_one_value_for_the_rest() -> None:
    label = metrics.RouteLabels(["/healthz", "/api/things/{name}", "/api/things/{name}/incr"])
    assert label("/healthz") == "/healthz"
    assert label("/api/things/a.b-c") == "/api/things/{name}"
    assert label("/api/things/a/incr") == "/api/things/{name}/incr"
    for path in ("/", "/healthz/", "/api/things/", "/api/things//incr", "/api/things/a/b", ""):
        assert label(path) == metrics.UNMATCHED, path


def test_a_fixed_path_wins_over_a_pattern_that_matches_it_too() -> None:
    label = metrics.RouteLabels(["/api/things/{name}", "/api/things/all"])
    assert label("/api/things/all") == "/api/things/all"
    assert label("/api/things/one") == "/api/things/{name}"


def test_every_route_of_the_table_labels_itself() -> None:
    label = metrics.RouteLabels(route.path for route in routes.ROUTES)
    for route in routes.ROUTES:
        example = routes.PARAM.sub("x1", route.path)
        assert label(example) == route.path


def test_unknown_methods_share_one_label() -> None:
    metrics.observe_request("BREW", "/unit", 200, 0.01)
    metrics.observe_request("GET", "/unit", 200, 0.01)
    text = metrics.exposition()[0].decode()
    lines = [line for line in text.splitlines() if 'route="/unit"' in line and "_total" in line]
    assert any('method="other"' in line for line in lines), lines
    assert not any("BREW" in line for line in lines), lines


def test_a_503_backend_unavailable_is_counted_where_it_is_answered() -> None:
    def count() -> float:
        return metrics.BACKEND_UNAVAILABLE.labels("TimeoutError")._value.get()

    before = count()
    assert error_reply(BackendUnavailable("TimeoutError")).status == 503
    assert count() == before + 1


def test_child_task_outcomes() -> None:
    for returncode, timed_out, outcome in [
        (0, False, "success"),
        (3, False, "failure"),
        (-9, False, "signal"),
        (-9, True, "timed_out"),
    ]:
        before = metrics.CHILD_TASKS.labels(outcome)._value.get()
        metrics.child_task(returncode, timed_out)
        assert metrics.CHILD_TASKS.labels(outcome)._value.get() == before + 1


def test_live_pids_are_the_workers_prometheus_client_has_not_marked_dead(tmp_path: Path) -> None:
    names = [
        *(
            f"gauge_{mode}_{pid}.db"
            for mode in ("all", "liveall", "livesum", "max")
            for pid in (7, 8)
        ),
        "counter_7.db",
        "histogram_7.db",
        "gauge_livemostrecent_7.db",
        "gauge_livesum_77.db",
    ]
    for name in names:
        (tmp_path / name).touch()
    assert metrics_files.live_pids(tmp_path) == [7, 8, 77]
    multiprocess.mark_process_dead(7, path=str(tmp_path))
    assert "counter_7.db" in os.listdir(tmp_path), "a dead worker's counts must stay"
    assert metrics_files.live_pids(tmp_path) == [8, 77]


def test_prepare_empties_a_configured_directory(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "metrics"
    target.mkdir()
    (target / "counter_1.db").touch()
    (target / "README").touch()
    monkeypatch.setenv(metrics_files.DIR_VARIABLE, os.path.relpath(target))
    assert metrics_files.prepare() == target
    assert os.listdir(target) == ["README"]
    # Absolute, since a worker may run in another directory.
    assert os.environ[metrics_files.DIR_VARIABLE] == str(target)
    metrics_files.remove()
    assert target.is_dir(), "a configured directory is never removed"


def test_prepare_makes_a_private_directory_when_none_is_set(monkeypatch) -> None:
    # Empty is unset; set through monkeypatch, so whatever prepare() sets is undone.
    monkeypatch.setenv(metrics_files.DIR_VARIABLE, "")
    made = metrics_files.prepare()
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o700
    assert os.environ[metrics_files.DIR_VARIABLE] == str(made)
    metrics_files.remove()
    assert not made.exists()


def test_prepare_names_a_directory_it_cannot_use(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(metrics_files.DIR_VARIABLE, str(blocker / "metrics"))
    with pytest.raises(metrics_files.MetricsDirError, match="PROMETHEUS_MULTIPROC_DIR="):
        metrics_files.prepare()


# Each process counts, then exits; another adds all of them up, as a scrape does.
WORKER = """
import sys
from {{ cookiecutter.package_name }} import metrics
metrics.worker_started()
for _ in range(int(sys.argv[1])):
    metrics.observe_request("GET", "/unit", 200, 0.001)
"""
SCRAPER = """
import sys
from {{ cookiecutter.package_name }} import metrics
assert metrics.MULTIPROCESS
sys.stdout.write(metrics.exposition()[0].decode())
"""


def run_python(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_processes_add_up_and_a_dead_ones_gauge_goes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        metrics_files.DIR_VARIABLE: str(tmp_path),
    }
    counts = [3, 5, 7]
    for count in counts:
        run_python(WORKER, env, str(count))
    pids = metrics_files.live_pids(tmp_path)
    assert len(pids) == len(counts)
    multiprocess.mark_process_dead(pids[0], path=str(tmp_path))

    text = run_python(SCRAPER, env)
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("method", "GET"), ("route", "/unit"), ("status", "200"))
    assert found[("http_requests_total", labels)] == sum(counts)
    # The dead process's requests stay counted; its "running" gauge is gone.
    assert found[("gunicorn_workers", ())] == len(counts) - 1


def test_a_file_a_new_worker_is_still_creating_does_not_fail_the_scrape(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), metrics_files.DIR_VARIABLE: str(tmp_path)}
    run_python(WORKER, env, "4")
    # What prometheus_client leaves between creating a value file and sizing it (or
    # for good, when its worker is killed then): 0 bytes. Its own collector fails on it.
    (tmp_path / "counter_99999.db").touch()
    (tmp_path / "gauge_livesum_99999.db").touch()
    with pytest.raises(struct.error):
        list(multiprocess.MultiProcessCollector(None, path=str(tmp_path)).collect())

    text = run_python(SCRAPER, env)
    assert 'http_requests_total{method="GET",route="/unit",status="200"} 4.0' in text, text


def test_nginx_metrics_access_lines() -> None:
    assert metrics_access("127.0.0.0/8 ::1") == "allow 127.0.0.0/8; allow ::1/128; deny all;"
    assert metrics_access("10.1.2.3, 10.0.0.0/8") == (
        "allow 10.1.2.3/32; allow 10.0.0.0/8; deny all;"
    )
    assert metrics_access("") == "deny all;"
    for bad in ("all", "127.0.0.1; allow all", "10.0.0.0/33"):
        with pytest.raises(StackError, match="METRICS_ALLOW_FROM"):
            metrics_access(bad)
