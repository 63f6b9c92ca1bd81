"""Load from wrk: many connections, a native client, figures as JSON.

Python cannot generate thousands of requests a second without becoming the
bottleneck it measures, so the load comes from wrk (Debian's `wrk`), driven
by report.lua, which prints its figures as one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("report.lua")
INSTALL_HINT = (
    "wrk is not installed: run scripts/install-system-deps.sh bench (apt-get install wrk)."
)
# A request unanswered this long counts as an error, not as a latency.
TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    # Connect, read and write errors, timeouts, and answers other than 2xx/3xx.
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.requests,
            "errors": self.errors,
        }


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(INSTALL_HINT)
    return found


def run(
    url: str,
    *,
    connections: int,
    seconds: float,
    method: str = "GET",
    body: dict | None = None,
) -> Load:
    """`connections` clients sending requests back to back to `url` for `seconds`."""
    argv = [
        wrk_path(),
        f"--threads={min(2, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={TIMEOUT_SECONDS}s",
        f"--script={SCRIPT}",
        url,
    ]
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_BODY": json.dumps(body) if body else ""}
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    line = next(
        (line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT ")), None
    )
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed on {url} (exit {done.returncode}): {done.stderr.strip()}")
    figures = json.loads(line.removeprefix("BENCH_RESULT "))
    errors = sum(
        figures[name]
        for name in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return Load(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        errors=errors,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
    )
