"""Start, watch and stop the stack's child processes without leaving any behind.

Each server runs in a session (and process group) of its own, so a Ctrl-C
meant for the runner does not reach it and so its whole group (gunicorn's
workers, nginx's workers) can be killed at once if a graceful stop hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from stack.errors import StackError

TAIL_LINES = 30


@dataclass
class Child:
    """One server process the stack started, with the logs that explain it."""

    name: str
    popen: subprocess.Popen[bytes]
    logs: tuple[Path, ...]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


def spawn(
    name: str,
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    output: Path,
    logs: Iterable[Path] = (),
) -> Child:
    """Start `argv` in a new session, stdout and stderr appended to `output`."""
    with open(output, "ab") as out:
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"could not start {name} ({argv[0]}): {exc}.") from exc
    return Child(name=name, popen=popen, logs=(*logs, output))


def tail(paths: Iterable[Path], lines: int = TAIL_LINES) -> str:
    """The last lines of each log that exists and is not empty."""
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            last = "\n".join(text.rstrip().splitlines()[-lines:])
            parts.append(f"--- last lines of {path} ---\n{last}")
    return "\n".join(parts) if parts else "(its logs are empty)"


def died(child: Child, doing: str) -> StackError:
    """The error for a child that exited while the stack was `doing` something."""
    return StackError(
        f"{child.name} exited with code {child.popen.returncode} while {doing}.\n{tail(child.logs)}"
    )


def wait_until(ready: Callable[[], bool], child: Child, *, timeout: float, what: str) -> None:
    """Poll `ready` until it is true; fail early if `child` dies, late if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise died(child, f"waiting for {what}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"{child.name} did not answer {what} within {timeout:g} s.\n{tail(child.logs)}"
            )
        time.sleep(0.05)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        # Only a foreign process could be in a group we cannot signal: the
        # number was reused, ours is gone.
        return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop(child: Child, sig: int, timeout: float) -> bool:
    """Ask `child` to stop with `sig`, then kill whatever of its group remains.

    The child is its group's leader (start_new_session), so its pid is the
    group id: after the leader exits, the group is killed outright in case a
    worker was orphaned, and we wait (bounded) until the group is empty.
    False if the child had to be killed because it outlasted `timeout`.
    """
    pgid = child.pid
    stopped_in_time = True
    if child.alive():
        with contextlib.suppress(ProcessLookupError):
            child.popen.send_signal(sig)
        try:
            child.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stopped_in_time = False
            _signal_group(pgid, signal.SIGKILL)
            child.popen.wait(timeout=10)
    else:
        child.popen.wait()
    if not _group_gone(pgid):
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        # Orphans are reaped by init; a zombie still counts, so this is bounded.
        while not _group_gone(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return stopped_in_time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process still runs, else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def http_status(
    connect: Callable[[], socket.socket], host: str, path: str, timeout: float = 2.0
) -> int | None:
    """The status of `GET path` over a fresh connection, or None if none came."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        "User-Agent: stack-healthcheck\r\n\r\n"
    ).encode("ascii")
    try:
        with connect() as sock:
            sock.settimeout(timeout)
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def unix_connector(path: Path, timeout: float = 2.0) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
        except OSError:
            sock.close()
            raise
        return sock

    return connect


def tcp_connector(port: int, timeout: float = 2.0) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    return connect


def redis_pings(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis on 127.0.0.1:`port` answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
