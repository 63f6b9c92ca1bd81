"""What watches the service, and Django's own refusals in the service's JSON shape.

`/healthz` says the process is up and touches nothing; `/readyz` asks the
shared-state backend, so a worker that cannot reach it is taken out of
rotation instead of failing requests; `/metrics` adds up every worker's
figures (`metrics`), and nginx lets only the scraper's addresses read it.

Every view is csrf_exempt: the API takes no cookies, so there is no session for
a forged request to ride, and an unsafe method on a read-only route answers 405
(CSRF's check would come first with an HTML 403).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from .. import http_errors, metrics
from .. import openapi as description
from ..errors import BackendUnavailable
from .apps import runtime
from .middleware import refusal


@csrf_exempt
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@csrf_exempt
@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    try:
        runtime().state.ping()
    except BackendUnavailable as exc:
        return JsonResponse({"status": "unavailable", "checks": {"state": exc.reason}}, status=503)
    return JsonResponse({"status": "ok", "checks": {"state": "ok"}})


@csrf_exempt
@require_safe
def scrape(request: HttpRequest) -> HttpResponse:
    content, content_type = metrics.exposition()
    return HttpResponse(content, content_type=content_type)


@csrf_exempt
@require_safe
def openapi(request: HttpRequest) -> HttpResponse:
    return HttpResponse(description.document_bytes(), content_type="application/json")


# urls.py names these handler400 and friends: no route, a disallowed Host, a crash.
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return refusal(400, "The request cannot be served as sent.")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return refusal(403, "This resource cannot be read.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return refusal(404, "No such resource.")


def server_error(request: HttpRequest) -> HttpResponse:
    return refusal(500, http_errors.INTERNAL_ERROR_MESSAGE)
