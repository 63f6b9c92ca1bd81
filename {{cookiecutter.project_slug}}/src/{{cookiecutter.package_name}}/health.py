"""Health answers for load balancers and orchestrators, for every framework.

`/healthz` says the process is up and touches nothing; `/readyz` asks the
shared-state backend, so a worker that cannot reach Redis is taken out of
rotation instead of failing requests.
"""

from __future__ import annotations

from . import runtime
from .errors import BackendUnavailable
from .replies import Call, Reply, json_reply


def healthz(call: Call) -> Reply:
    return json_reply(200, {"status": "ok"})


READY = json_reply(200, {"status": "ok", "checks": {"state": "ok"}})


def unready(exc: BackendUnavailable) -> Reply:
    return json_reply(503, {"status": "unavailable", "checks": {"state": exc.reason}})


def readyz(call: Call) -> Reply:
    try:
        runtime.current().state.ping()
    except BackendUnavailable as exc:
        return unready(exc)
    return READY
