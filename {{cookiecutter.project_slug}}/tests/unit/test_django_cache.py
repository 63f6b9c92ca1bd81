"""The project's Django caches against Django's own cache tests, and state that no cull drops.

`cache.SQLiteCache` must behave as Django's backends do, bounds included:
Django's `BaseCacheTests` (tests/cache/tests.py in the source distribution of
the installed Django) run on it, `test_cull` and `test_zero_cull` among them.
The counters live in the state cache (settings.STATE_CACHE_ALIAS), which never
culls: a default cache filled far past MAX_ENTRIES, then cleared, leaves them
as they were. Several processes adding keys at once never take the default
cache past its bound.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django
import pytest

from {{ cookiecutter.package_name }}.django_project.cache import SQLiteCache

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("django_cache_child.py")
SETTINGS = "{{ cookiecutter.package_name }}.django_project.settings"
BACKENDS = "{{ cookiecutter.package_name }}.django_project.cache"
# Downloaded once per Django version and kept, like the other scratch under var/.
SDIST_DIR = PROJECT_ROOT / "var" / "django-sdist"
# Seconds for pip to fetch the source distribution, and for one run of the child.
DOWNLOAD_SECONDS = 600
RUN_SECONDS = 300

# Django's tests that cannot apply to a backend, each with the reason.
NOT_APPLICABLE = {
    "SQLiteCache": {},
    "SQLiteStateCache": {
        name: "the state cache never culls: a cull would drop counters (checks.py refuses "
        "MAX_ENTRIES and CULL_FREQUENCY there)"
        for name in ("test_cull", "test_zero_cull")
    },
}


@pytest.fixture(scope="module")
def django_tests_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Django's tests/cache package, from the source distribution of the installed Django."""
    version = django.get_version()
    where = SDIST_DIR / version
    archives = sorted(where.glob("*.tar.gz"))
    if not archives:
        SDIST_DIR.mkdir(parents=True, exist_ok=True)
        # Into a scratch directory first: an interrupted download leaves nothing behind.
        scratch = Path(tempfile.mkdtemp(dir=SDIST_DIR))
        try:
            done = subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet",
                    "--disable-pip-version-check", "--no-binary", ":all:", "--no-deps",
                    "--dest", str(scratch), f"django=={version}",
                ],
                capture_output=True,
                text=True,
                timeout=DOWNLOAD_SECONDS,
            )  # fmt: skip
            assert done.returncode == 0, f"pip could not fetch Django's sources: {done.stderr}"
            scratch.rename(where)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        archives = sorted(where.glob("*.tar.gz"))
    [archive] = archives
    root = tmp_path_factory.mktemp("django-tests")
    with tarfile.open(archive) as sdist:
        wanted = [m for m in sdist.getmembers() if "/tests/cache/" in m.name]
        sdist.extractall(root, members=wanted, filter="data")
    [tests] = root.glob("*/tests")
    return tests


def run_child(*args: str, **environ: str) -> dict:
    """The child's report: this environment, plus `environ`."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), str(PROJECT_ROOT)]),
        **environ,
    }
    done = subprocess.run(
        [sys.executable, str(CHILD), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", sorted(NOT_APPLICABLE))
def test_djangos_own_cache_tests_pass(django_tests_root, tmp_path, backend):
    not_applicable = NOT_APPLICABLE[backend]
    report = run_child(
        "suite",
        str(django_tests_root),
        str(tmp_path / "data"),
        f"{BACKENDS}.{backend}",
        json.dumps(not_applicable),
    )
    assert report["failed"] == {}, "\n".join(report["failed"].values())
    assert report["skipped"] == not_applicable
    culls = {"test_cull", "test_zero_cull", "test_cull_delete_when_store_empty"}
    assert culls - set(not_applicable) <= set(report["passed"])


# Writers, new keys each, and the bound they share. Each cull drops a single row (a
# fraction this small rounds down to none, and room for one is always made), so every
# write after the first MAX_ENTRIES lands at the bound, where writers race.
WRITERS = 4
KEYS_EACH = 300
MAX_ENTRIES = 40
BOUNDS = {"MAX_ENTRIES": MAX_ENTRIES, "CULL_FREQUENCY": 10 * MAX_ENTRIES}


def _fill(location: str, writer: int, start, failures, peaks) -> None:
    cache = SQLiteCache(location, {"OPTIONS": BOUNDS})
    # A reader of its own, beside the cache's connection, sees only committed rows.
    table = sqlite3.connect(Path(location) / "state.sqlite3", timeout=30)
    start.wait()
    peak = 0
    for i in range(KEYS_EACH):
        try:
            cache.set(f"w{writer}-{i}", i)
        except sqlite3.Error as exc:
            failures.put(repr(exc))
        (rows,) = table.execute("SELECT count(*) FROM django_cache").fetchone()
        peak = max(peak, rows)
    peaks.put(peak)


def test_the_bound_holds_with_several_processes_writing(tmp_path):
    location = str(tmp_path / "data")
    SQLiteCache(location, {}).clear()  # the database and its tables, before the fork
    context = multiprocessing.get_context("fork")
    start, failures, peaks = context.Event(), context.Queue(), context.Queue()
    procs = [
        context.Process(target=_fill, args=(location, n, start, failures, peaks))
        for n in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == [], f"{len(errors)} writes failed, e.g. {errors[:3]}"
    assert max(peaks.get() for _ in procs) <= MAX_ENTRIES
    cache = SQLiteCache(location, {})
    kept = sum(cache.has_key(f"w{n}-{i}") for n in range(WRITERS) for i in range(KEYS_EACH))
    assert 0 < kept <= MAX_ENTRIES
{% if cookiecutter.include_examples %}


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_counters_survive_a_full_and_a_cleared_default_cache(tmp_path, request, backend):
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DJANGO_SECRET_KEY": "unit-test-key-" + "cUlL5" * 10,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATA_DIR": str(tmp_path / "data"),
        "EXPORT_DIR": str(tmp_path / "exports"),
        # Whatever this shell has: the embedded backend, SQLite, DEBUG off.
        "REDIS_URL": "",
        "DATABASE_URL": "",
        "DJANGO_DEBUG": "",
    }
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        env["REDIS_URL"] = f"redis://127.0.0.1:{server.port}/0"
        env["KEY_PREFIX"] = f"cull-{tmp_path.name}"
    report = run_child("counters", **env)
    assert report["counted"] == [1, 2, 3, 4]
    if backend == "embedded":
        # Redis has no MAX_ENTRIES (checks.py refuses it): its maxmemory bounds it.
        assert report["fillers_kept"] <= report["max_entries"] < report["fillers"]
    assert report["after_fill"] == 4
    # The Idempotency-Key's record survived too: the retry is answered, not counted.
    assert report["retried"] == 4
    assert report["after_clear"] == 4
{% endif %}
