"""The long runs of this suite (each generated project's whole `make test`, each tooth)
started when the session starts and run a few at a time beside the other tests.

Such a run is a subprocess that mostly waits: on sleeps, on timeouts and on the
servers it started. Several at once on two cores take little more than one, so
the session's length is set by the sum of their CPU, not of their waits. Each
run's test, collected at the session's end, only waits for its outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# How many long runs go at once (beside the session's own tests): on two cores a
# whole run finished sooner with 3 than with 2 (README), every proof green either way.
RUNS_AT_ONCE = int(os.environ.get("TEMPLATE_TEST_RUNS_AT_ONCE", "3"))


@dataclass(frozen=True)
class Outcome:
    """How one command of a run ended."""

    status: int
    log: Path
    seconds: float


class Background:
    """A bounded pool of runs, each a function of its own thread, keyed by a test id."""

    def __init__(self, at_once: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, at_once), thread_name_prefix="run")
        self._runs: dict[str, Future[object]] = {}
        self._children: set[subprocess.Popen[bytes]] = set()
        self._guard = threading.Lock()
        self._closing = False

    def start(self, key: str, run: Callable[[], object]) -> None:
        if key not in self._runs:
            self._runs[key] = self._pool.submit(run)

    def started(self, key: str) -> bool:
        return key in self._runs

    def result(self, key: str) -> object:
        """The run's return value; what it raised (pytest.fail too) is raised here."""
        return self._runs[key].result()

    def command(
        self, command: list[str], *, cwd: Path, log: Path, env: dict[str, str], timeout: float
    ) -> Outcome:
        """Run a command in a session of its own, its output to `log`.

        On timeout, or when the pool closes, the whole group gets SIGINT (so a
        pytest inside stops its servers), then SIGKILL.
        """
        started = time.monotonic()
        with self._guard:
            if self._closing:
                return Outcome(-1, log, 0.0)
            process = spawn_logged(command, cwd=cwd, log=log, env=env)
            self._children.add(process)
        try:
            status = wait_or_stop(process, log, timeout)
        finally:
            with self._guard:
                self._children.discard(process)
        return Outcome(status, log, time.monotonic() - started)

    def close(self) -> None:
        """Start nothing more, and stop what still runs (a session cut short)."""
        with self._guard:
            self._closing = True
            running = list(self._children)
        for future in self._runs.values():
            future.cancel()
        for process in running:
            stop_group(process)
        self._pool.shutdown(wait=True)


def spawn_logged(
    command: list[str], *, cwd: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start a command in a session of its own, its output to `log` (after a line
    naming it), so a test can signal or kill its whole group."""
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}   (in {cwd})\n")
        out.flush()
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_or_stop(process: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The command's exit status; past `timeout`, its group stopped (said in `log`) and -1."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(process)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"\n*** stopped after {timeout} s ***\n")
        return -1


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to the whole group (a pytest inside stops its servers), SIGKILL after 30 s."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
