"""Real servers for the unit tests that need one: redis-server on a free port.

Each is started from the test's own directory, without persistence (like the
stack's), and stopped by pid at the end, SIGCONT first in case a test left it
stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack import procs
from stack.project import find_program

# A unit test calls the toolkit in this process, where no gunicorn worker runs: its
# outcome is the same whatever worker class the project was generated for. These
# modules read or start the configured class (gunicorn.conf.py, Django's settings).
READS_THE_WORKER_CLASS = {
    "test_boot.py",
    "test_django_checks.py",
    "test_django_sessions.py",
    "test_gunicorn_config.py",
}
HERE = Path(__file__).resolve().parent

# Seconds a test redis-server may take to answer PING, or to stop.
START_SECONDS = 15.0
STOP_SECONDS = 10.0


class RedisServer:
    """One redis-server on 127.0.0.1:`port`, without persistence, like the stack's."""

    def __init__(self, directory: Path, port: int, replica_of: int | None = None) -> None:
        self.directory = directory
        self.port = port
        self.replica_of = replica_of
        self.child: procs.Child | None = None

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            find_program("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.child = procs.spawn(
            "redis-server",
            argv,
            cwd=self.directory,
            env=dict(os.environ),
            output=self.directory / "redis.out",
            logs=(self.directory / "redis.log",),
        )
        procs.wait_until(
            lambda: procs.redis_pings(self.port),
            self.child,
            timeout=START_SECONDS,
            what=f"PING on 127.0.0.1:{self.port}",
        )
        return self

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.pid

    def signal(self, sig: int) -> None:
        assert self.child is not None
        os.kill(self.child.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved (and with --save "" nothing to load)."""
        assert self.child is not None
        self.signal(signal.SIGKILL)
        self.child.popen.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, signal.SIGCONT)  # a stopped server cannot exit
            procs.stop(self.child, signal.SIGTERM, STOP_SECONDS)
            self.child = None

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A client like the service's: socket timeouts, no automatic retries."""
        return redis.Redis(
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """A factory of redis-servers; every one is stopped by pid at the end."""
    started: list[RedisServer] = []

    def start(name: str, port: int | None = None, replica_of: int | None = None) -> RedisServer:
        server = RedisServer(tmp_path / name, port or procs.free_port(), replica_of)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server shared by a test module; stopped by pid at the end."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), procs.free_port())
    try:
        yield server.start()
    finally:
        server.stop()


# Before pytest's -m selection, which reads the marks.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents and item.path.name not in READS_THE_WORKER_CLASS:
            item.add_marker(pytest.mark.same_for_every_worker_class)
