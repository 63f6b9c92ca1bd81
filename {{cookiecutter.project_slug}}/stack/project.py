"""Where the project's files are, and what gunicorn will run with.

nginx's timeouts and upstream keepalive must agree with gunicorn's settings;
asking gunicorn.conf.py itself (it prints its resolved values as JSON) keeps
one source for them instead of a second guess in the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from stack.errors import StackError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = PROJECT_ROOT / "gunicorn.conf.py"
NGINX_TEMPLATES = PROJECT_ROOT / "deploy" / "nginx"
STATIC_DIR = PROJECT_ROOT / "static"
INSTALL_HINT = "run scripts/install-system-deps.sh (apt-get install nginx redis-server)"

# Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_program(name: str) -> str:
    """The path of a system program, or a StackError saying how to install it."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise StackError(f"{name} is not installed: {INSTALL_HINT}.")


@dataclass(frozen=True)
class GunicornSettings:
    """The gunicorn values nginx's configuration depends on, as gunicorn.conf.py derives them."""

    worker_class: str
    timeout: int
    keepalive: int
    graceful_timeout: int
    # How long nginx waits for an answer: above gunicorn's worker timeout.
    nginx_read_timeout: int
    workers: int = 2
    # Child tasks at once across the workers (LONG_WORK_CAP), for the tests that fill it.
    long_work_cap: int = 1


def gunicorn_settings(env: dict[str, str]) -> GunicornSettings:
    """Run `python gunicorn.conf.py` with `env` and read the values it prints."""
    try:
        done = subprocess.run(
            [sys.executable, str(GUNICORN_CONF)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{GUNICORN_CONF.name} did not print its settings within 60 s.") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:]
        raise StackError(
            f"{GUNICORN_CONF.name} refused its settings (exit {done.returncode}):\n{detail}"
        )
    try:
        printed = json.loads(done.stdout)
    except ValueError:
        raise StackError(
            f"{GUNICORN_CONF.name} did not print JSON; it printed:\n{done.stdout[-2000:]}"
        ) from None
    if not isinstance(printed, dict):
        raise StackError(f"{GUNICORN_CONF.name} printed JSON that is not an object.")

    def number(key: str) -> int:
        value = printed.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StackError(f"{GUNICORN_CONF.name} printed {key}={value!r}, not a number.")
        return int(value)

    # By its gunicorn name (gthread), not the class gunicorn is given to load.
    worker_class = printed.get("worker_class_name")
    if not isinstance(worker_class, str) or not worker_class:
        raise StackError(f"{GUNICORN_CONF.name} printed worker_class_name={worker_class!r}.")
    return GunicornSettings(
        worker_class=worker_class,
        timeout=number("timeout"),
        keepalive=number("keepalive"),
        graceful_timeout=number("graceful_timeout"),
        nginx_read_timeout=number("nginx_read_timeout"),
        workers=number("workers"),
        long_work_cap=number("long_work_cap"),
    )
