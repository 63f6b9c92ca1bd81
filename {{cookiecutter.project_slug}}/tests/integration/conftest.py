"""Fixtures for the black-box suite: the service through nginx, with real workers and Redis.

With BASE_URL set, every test runs against that URL and the tests that must
control the servers (stop Redis, read gunicorn's log, look at the export
store) are skipped. Without it, the suite starts its own stacks on free
loopback ports in temporary directories and stops them by pid at the end.
The environment passes through to gunicorn, so APP_MODULE can point the same
suite at a naive variant of the app, which these tests must fail.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers next to this file import as `client` under any pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client import Client

EXTERNAL_BASE_URL = os.environ.get("BASE_URL", "").strip().rstrip("/")
NEEDS_OWN_STACK = "needs a stack started by the suite (unset BASE_URL to run it)"
# "redis" or "embedded": the backend of the stacks this suite starts (see stack.Stack).
BACKEND = os.environ.get("STACK_BACKEND", "").strip() or "redis"

# Three workers on two cores: enough to prove spreading, light enough for CI.
DEFAULT_ENV = {"WEB_CONCURRENCY": "3"}


@contextlib.contextmanager
def running_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]
) -> Iterator[object]:
    """Start redis-server, gunicorn and nginx; stop all three whatever happens."""
    from stack import Stack

    stack = Stack(tmp_path_factory.mktemp(name), env=env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def own_stack_or_skip(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]):
    if EXTERNAL_BASE_URL:
        pytest.skip(NEEDS_OWN_STACK)
    return running_stack(tmp_path_factory, name, env)


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
