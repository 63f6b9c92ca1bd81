"""What watches the service: liveness, readiness, metrics and the API's description.

`/healthz` says the process is up and touches nothing; `/readyz` asks the
shared-state backend, so a worker that cannot reach it is taken out of
rotation instead of failing requests; `/metrics` adds up every worker's
figures (`metrics`), and nginx lets only the scraper's addresses read it.
"""

from __future__ import annotations

from flask import Blueprint, Response

from .. import metrics
from .. import openapi as description
from ..errors import BackendUnavailable
from .context import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, object]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, object], int]:
    try:
        runtime().state.ping()
    except BackendUnavailable as exc:
        return {"status": "unavailable", "checks": {"state": exc.reason}}, 503
    return {"status": "ok", "checks": {"state": "ok"}}, 200


@bp.get("/metrics")
def scrape() -> Response:
    content, content_type = metrics.exposition()
    return Response(content, content_type=content_type)


@bp.get("/api/openapi.json")
def openapi() -> Response:
    return Response(description.document_bytes(), content_type="application/json")
