"""Fixtures for the black-box suite: the service through nginx, with real workers and Redis.

With BASE_URL set, every test runs against that URL and the tests that must
control the servers (stop Redis, read gunicorn's log, look at the export
store) are skipped. Without it, the suite starts its own stacks on free
loopback ports in temporary directories and stops them by pid at the end.
The environment passes through to gunicorn, so APP_MODULE can point the same
suite at a naive variant of the app, which these tests must fail.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers next to this file import as `client` under any pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client import Client
from stacks import BACKEND, EXTERNAL_BASE_URL, own_stack_or_skip

# Three workers on two cores: enough to prove spreading, light enough for CI.
DEFAULT_ENV = {"WEB_CONCURRENCY": "3"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The default stack, shared by the whole session; skipped when BASE_URL is set."""
    with own_stack_or_skip(tmp_path_factory, "stack", DEFAULT_ENV) as started:
        yield started


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> str:
    if EXTERNAL_BASE_URL:
        return EXTERNAL_BASE_URL
    return request.getfixturevalue("stack").base_url


@pytest.fixture(scope="session")
def client(base_url: str) -> Client:
    return Client(base_url)


@pytest.fixture(scope="session")
def configured_worker_class(request: pytest.FixtureRequest) -> str:
    """The class gunicorn was told to run: the stack's, or gunicorn.conf.py's for BASE_URL."""
    if EXTERNAL_BASE_URL:
        from stack.project import gunicorn_settings

        configured = gunicorn_settings(dict(os.environ)).worker_class
    else:
        configured = request.getfixturevalue("stack").gunicorn_settings.worker_class
    # aiohttp's worker is configured as aiohttp.GunicornWebWorker, reported as aiohttp.
    return "aiohttp" if configured.startswith("aiohttp.") else configured


@pytest.fixture(scope="module")
def short_timeout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """gunicorn kills a worker silent for 2 s: a slow download must not need one."""
    env = {"WEB_CONCURRENCY": "2", "GUNICORN_TIMEOUT": "2"}
    with own_stack_or_skip(tmp_path_factory, "short-timeout", env) as started:
        yield started


@pytest.fixture(scope="module")
def short_lock_wait_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A lock-wait limit of half a second, so a blocked caller gets 409 quickly."""
    env = {"WEB_CONCURRENCY": "2", "LOCK_WAIT_SECONDS": "0.5"}
    with own_stack_or_skip(tmp_path_factory, "short-lock-wait", env) as started:
        yield started


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A stack of its own, so stopping its Redis disturbs no other test."""
    if BACKEND != "redis":
        pytest.skip("stops Redis; this run's stacks use the embedded backend (no Redis)")
    env = {"WEB_CONCURRENCY": "2", "REDIS_TIMEOUT_SECONDS": "1"}
    with own_stack_or_skip(tmp_path_factory, "redis-down", env) as started:
        yield started


@pytest.fixture(scope="module")
def rate_limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
{% if cookiecutter.framework == "aiohttp" %}
    """A low shared rate limit (1 a second, a burst of 5) over three workers."""
    env = {
        "WEB_CONCURRENCY": "3",
{% else %}
    """A low shared rate limit (1 a second, a burst of 5) over three sync workers.

    Sync workers take one request at a time, so concurrent requests must spread
    over all three: a limit counted per worker would show.
    """
    env = {
        "WEB_CONCURRENCY": "3",
        "GUNICORN_WORKER_CLASS": "sync",
{% endif %}
        "RATE_LIMIT_PER_SECOND": "1",
        "RATE_LIMIT_BURST": "5",
        # A task for each worker at once, so every refusal here is the rate limit's
        # (test_long_work_cap.py proves the cap).
        "LONG_WORK_CAP": "3",
    }
    with own_stack_or_skip(tmp_path_factory, "rate-limited", env) as started:
        yield started
