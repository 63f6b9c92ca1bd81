"""The shared-state system check: with DEBUG off, per-process or file stores are refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = "{{ cookiecutter.package_name }}.django_project.settings"
# Long and random enough for `check --deploy` (security.W009).
SECRET_KEY = "unit-test-key-" + "k3y5ecRet" * 6

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
DUMMY = "django.core.cache.backends.dummy.DummyCache"
FILES = "django.core.cache.backends.filebased.FileBasedCache"


def caches(backend: str) -> str:
    """A CACHES setting, as Python source, whose default cache is `backend`."""
    # FileBasedCache's own check wants an absolute LOCATION; nothing is written there.
    return f"CACHES = {dict(default=dict(BACKEND=backend, LOCATION='/tmp/unused'))!r}"


def run_check(
    tmp_path: Path, overrides: str = "", *args: str, **environ: str
) -> subprocess.CompletedProcess:
    """`manage.py check` with the real settings, plus `overrides` (Python) after them."""
    (tmp_path / "overridden_settings.py").write_text(
        f"from {SETTINGS} import *  # noqa: F403\n{overrides}\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "overridden_settings",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT_ROOT / "src")]),
    }
    for name in ("REDIS_URL", "DATABASE_URL", "DJANGO_DEBUG"):
        env.pop(name, None)
    env.update(environ)
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "check", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_configuration_passes_the_deploy_checks(tmp_path):
    done = run_check(tmp_path, "", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stderr


def test_the_redis_configuration_passes_the_deploy_checks(tmp_path):
    redis_url = "redis://127.0.0.1:1/0"  # never connected to
    done = run_check(tmp_path, "", "--deploy", "--fail-level", "WARNING", REDIS_URL=redis_url)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("backend", [LOCMEM, DUMMY, FILES])
def test_a_cache_of_one_process_or_one_disk_is_refused(tmp_path, backend):
    done = run_check(tmp_path, caches(backend))
    assert done.returncode != 0
    assert "django_project.E001" in done.stderr, done.stderr
    assert "gunicorn's workers would not share it" in done.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        "SESSION_ENGINE = 'django.contrib.sessions.backends.file'",
        "SESSION_ENGINE = 'django.contrib.sessions.backends.cache'\n"
        f"CACHES['local'] = {dict(BACKEND=LOCMEM)!r}\n"
        "SESSION_CACHE_ALIAS = 'local'",
    ],
    ids=["file", "locmem"],
)
def test_sessions_of_one_process_or_one_disk_are_refused(tmp_path, overrides):
    done = run_check(tmp_path, overrides)
    assert done.returncode != 0
    assert "django_project.E002" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("overrides", "redis_url"),
    [
        ("CACHES['state']['OPTIONS'] = {'MAX_ENTRIES': 1000}", ""),
        ("CACHES['default']['OPTIONS']['CULL_FREQUENCY'] = 2", "redis://127.0.0.1:1/0"),
    ],
    ids=["sqlite-state", "redis"],
)
def test_bounds_a_cache_would_ignore_are_refused(tmp_path, overrides, redis_url):
    done = run_check(tmp_path, overrides, REDIS_URL=redis_url)
    assert done.returncode != 0
    assert "django_project.E003" in done.stderr, done.stderr
    assert "would ignore" in done.stderr


def test_bounds_on_the_default_cache_are_honoured(tmp_path):
    overrides = "CACHES['default']['OPTIONS'] = {'MAX_ENTRIES': 1000, 'CULL_FREQUENCY': 4}"
    done = run_check(tmp_path, overrides)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "backend", ["{{ cookiecutter.package_name }}.django_project.cache.SQLiteCache", LOCMEM]
)
def test_a_state_cache_that_may_drop_entries_is_refused(tmp_path, backend):
    done = run_check(tmp_path, f"CACHES['state']['BACKEND'] = {backend!r}")
    assert done.returncode != 0
    assert "django_project.E004" in done.stderr, done.stderr
    assert "the counters kept there would be lost" in done.stderr


def test_debug_allows_a_local_cache(tmp_path):
    done = run_check(tmp_path, "DEBUG = True\n" + caches(LOCMEM))
    assert done.returncode == 0, done.stderr


def test_no_secret_key_is_one_sentence(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATA_DIR": str(tmp_path)}
    env.pop("DJANGO_SECRET_KEY", None)
    env.pop("DJANGO_DEBUG", None)
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "manage.py"), "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in done.stderr.strip().splitlines()[-1]
