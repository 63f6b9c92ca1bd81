"""The stacks the measures compare, each one setting changed from the service as it ships.

Every setup runs the project's own gunicorn.conf.py behind the project's own
nginx configuration; only what the setup's comment names differs.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from stack import Stack

BENCH_DIR = Path(__file__).resolve().parent
# The measures time the toolkit, not its abuse protection: the expensive
# endpoints' per-client budget is lifted for every setup alike.
UNLIMITED = {"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000"}


@dataclass(frozen=True)
class Setup:
    name: str
    why: str
    env: dict[str, str] = field(default_factory=dict)
    backend: str = "redis"
    # The slow-download pitfall as teams meet it: nginx passes the answer through
    # as the worker writes it, so a slow reader holds the worker.
    unbuffered: bool = False


def bench_app(module: str) -> dict[str, str]:
    """gunicorn loads `module` from benchmarks/ instead of the service."""
    return {"APP_MODULE": module, "PYTHONPATH": str(BENCH_DIR)}


def setups(framework: str, worker_class: str, other_classes: list[str]) -> list[Setup]:
    factory = "create_app" if framework == "aiohttp" else "app"
    found = [
        Setup("service", "the service as generated: its defaults, Redis, X-Accel-Redirect"),
        Setup("direct", "the app sends downloads itself", {"EXPORT_DELIVERY": "direct"}),
        Setup("hello", f"a bare {framework} hello world", bench_app(f"hello:{factory}")),
        Setup("unmetered", "no request metrics", bench_app(f"unmetered:{factory}")),
        Setup("embedded", "the embedded backend (SQLite, file locks)", backend="embedded"),
        Setup(
            "redis_py_lock",
            "the locked increment under redis-py's Lock",
            bench_app(f"redis_py_lock:{factory}"),
        ),
        Setup("no_recycling", "workers never recycled", {"GUNICORN_MAX_REQUESTS": "0"}),
    ]
    if framework != "aiohttp":
        found.append(
            Setup(
                "naive",
                "sync workers sending files themselves, nginx buffering off",
                {"GUNICORN_WORKER_CLASS": "sync", "EXPORT_DELIVERY": "direct"},
                unbuffered=True,
            )
        )
    for other in other_classes:
        found.append(
            Setup(f"class_{other}", f"the {other} worker class", {"GUNICORN_WORKER_CLASS": other})
        )
    return found


def start(setup: Setup, run_dir: Path) -> Stack:
    stack = Stack(run_dir / setup.name, env={**UNLIMITED, **setup.env}, backend=setup.backend)
    stack.start()
    if setup.unbuffered:
        turn_buffering_off(stack)
    return stack


def turn_buffering_off(stack: Stack) -> None:
    """Rewrite the stack's rendered nginx configuration, then reload nginx."""
    conf = stack.nginx_dir / "app.conf"
    text = conf.read_text()
    if "proxy_buffering on;" not in text:
        raise RuntimeError(f"{conf} no longer says 'proxy_buffering on;': update the bench.")
    conf.write_text(text.replace("proxy_buffering on;", "proxy_buffering off;"))
    os.kill(stack.pids()["nginx"], signal.SIGHUP)
    # nginx starts new workers with the new configuration and retires the old ones.
    time.sleep(1.0)
