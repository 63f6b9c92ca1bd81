"""The Django adapter: the route table mounted as urlpatterns, and one way to answer.

Everything a multi-worker service must get right lives in the framework-free
modules of the package; a view here only hands the path parameters, body and
headers to a handler and turns its `Reply` into a Django response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from django.core.exceptions import RequestDataTooBig
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

from .. import routes
from ..errors import ServiceError
from ..replies import Call, Reply, error_reply, internal_error_reply, status_reply

Handler = Callable[[Call], Reply]

log = logging.getLogger(__name__)


def to_response(reply: Reply) -> HttpResponseBase:
    """The one place a `Reply` becomes a Django response."""
    content_type = reply.headers.get("Content-Type")
    response: HttpResponseBase
    if reply.file is not None:
        response = FileResponse(
            open(reply.file, "rb"),  # noqa: SIM115 (FileResponse closes it)
            status=reply.status,
            content_type=content_type,
        )
    elif reply.raw is not None:
        response = HttpResponse(reply.raw, status=reply.status, content_type=content_type)
    elif reply.body is None:
        # HttpResponse would say text/html; an X-Accel-Redirect answer must carry the
        # file's type, which nginx passes on, and any other empty body has none.
        response = HttpResponse(b"", status=reply.status, content_type=content_type)
        if content_type is None:
            del response["Content-Type"]
    else:
        response = JsonResponse(reply.body, status=reply.status, safe=False)
    for name, value in reply.headers.items():
        response[name] = value
    return response


def _answer(handler: Handler, request: HttpRequest, params: dict[str, str]) -> HttpResponseBase:
    try:
        body = request.body
    except RequestDataTooBig:
        # nginx refuses these first; this guards direct connections (`make run`).
        return to_response(status_reply(413, "The request body is larger than 1 MiB."))
    call = Call.of(params, body, request.headers.items(), request.META.get("REMOTE_ADDR"))
    try:
        return to_response(handler(call))
    except ServiceError as exc:
        return to_response(error_reply(exc))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return to_response(internal_error_reply())


def _view(methods: Mapping[str, Handler]) -> Callable[..., HttpResponseBase]:
    """One view per path, dispatching by method; OPTIONS gets 204 with Allow (as
    Flask's adapter answers it), other methods 405 with Allow."""
    if "GET" in methods:
        methods = {**methods, "HEAD": methods["GET"]}
    allow = ", ".join(sorted({*methods, "OPTIONS"}))

    # The API takes no cookies, so there is no session for a forged request to ride.
    @csrf_exempt
    def view(request: HttpRequest, **params: str) -> HttpResponseBase:
        if request.method == "OPTIONS":
            return to_response(Reply(204, None, {"Allow": allow}))
        handler = methods.get(request.method or "")
        if handler is None:
            return to_response(
                status_reply(405, "This method is not allowed here.", {"Allow": allow})
            )
        return _answer(handler, request, params)

    return view


def _django_path(route_path: str) -> str:
    # "/api/counters/{name}" -> "api/counters/<str:name>" (str matches no "/").
    return routes.PARAM.sub(r"<str:\1>", route_path).removeprefix("/")


def urlpatterns(replacements: Mapping[str, Handler]) -> list[URLPattern]:
    """Every route of `routes.ROUTES`; `replacements` swaps handlers by route name."""
    patterns = []
    for route_path, by_method in routes.by_path().items():
        methods = {
            method: replacements.get(route.name, route.handler)
            for method, route in by_method.items()
        }
        patterns.append(path(_django_path(route_path), _view(methods)))
    return patterns


# Django's own refusals (no route, a disallowed Host, a crash outside a view) in
# the service's JSON error shape; urls.py names these as handler400 and friends.
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    return to_response(status_reply(400, "The request cannot be served as sent."))


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    return to_response(status_reply(403, "This resource cannot be read."))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponseBase:
    return to_response(status_reply(404, "No such resource."))


def server_error(request: HttpRequest) -> HttpResponseBase:
    return to_response(internal_error_reply())
