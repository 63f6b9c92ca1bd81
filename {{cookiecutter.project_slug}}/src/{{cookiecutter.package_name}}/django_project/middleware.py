"""Every error answers in the service's one JSON shape, from `http_errors`' table."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

from .. import http_errors
from ..errors import ServiceError


def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    """A refusal of Django's or of this project (404, 405, 413...)."""
    return JsonResponse(http_errors.refusal(status, message), status=status, headers=headers)


class JsonErrors:
    """A toolkit error raised in a view answers with its status, code and headers.

    A body over DATA_UPLOAD_MAX_MEMORY_SIZE answers 413 (Django's own path would
    answer 400: RequestDataTooBig is a SuspiciousOperation). A 405 from
    `require_POST` and the like lists OPTIONS too, and an OPTIONS request gets 204
    with that Allow. Any other crash goes on to handler500 (`views.server_error`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            return self.not_allowed(request, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ServiceError):
            status, body, headers = http_errors.answer(exception)
            return JsonResponse(body, status=status, headers=headers)
        if isinstance(exception, RequestDataTooBig):
            # nginx refuses these first; this guards direct connections (`make run`).
            return refusal(413, "The request body is larger than 1 MiB.")
        return None

    @staticmethod
    def not_allowed(request: HttpRequest, response: HttpResponseNotAllowed) -> HttpResponse:
        methods = {method.strip() for method in response["Allow"].split(",")}
        allow = ", ".join(sorted({*methods, "OPTIONS"}))
        if request.method == "OPTIONS":
            options = HttpResponse(status=204, headers={"Allow": allow})
            # An empty answer has no type (HttpResponse would say text/html).
            del options["Content-Type"]
            return options
        return refusal(405, "This method is not allowed here.", {"Allow": allow})
