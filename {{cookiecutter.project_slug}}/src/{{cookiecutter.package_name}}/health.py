"""Answers for what watches the service, for every framework.

`/healthz` says the process is up and touches nothing; `/readyz` asks the
shared-state backend, so a worker that cannot reach Redis is taken out of
rotation instead of failing requests. `/metrics` is for Prometheus: the
whole service's figures, whichever worker answers (`metrics`); nginx lets
only the scraper's addresses read it. `/api/openapi.json` is the API's
description (`openapi`).
"""

from __future__ import annotations

from . import metrics, runtime
from .errors import BackendUnavailable
from .openapi import document_bytes
from .replies import Call, Reply, json_reply, text_reply


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


def scrape(call: Call) -> Reply:
    content, content_type = metrics.exposition()
    return text_reply(200, content, content_type)


def openapi(call: Call) -> Reply:
    return text_reply(200, document_bytes(), "application/json")
