"""Health answers for load balancers and orchestrators, for every framework.

`/healthz` says the process is up and touches nothing; `/readyz` asks the
shared-state backend, so a worker that cannot reach Redis is taken out of
rotation instead of failing requests. Like every module the adapters call,
each function returns `(status, payload)`.
"""

from __future__ import annotations

from . import backend


def healthz() -> tuple[int, dict]:
    return 200, {"status": "ok"}


def readyz() -> tuple[int, dict]:
    state = backend.check()
    if state == "ok":
        return 200, {"status": "ok", "checks": {"state": "ok"}}
    return 503, {"status": "unavailable", "checks": {"state": state}}
