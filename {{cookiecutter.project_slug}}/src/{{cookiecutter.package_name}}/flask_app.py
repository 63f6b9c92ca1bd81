"""The Flask adapter: routes, body parsing and the JSON error shape, nothing more.

Everything a multi-worker service must get right lives in the framework-free
modules beside this one; a view here only hands over the path and the body.
"""

from __future__ import annotations

{% if cookiecutter.include_examples %}
from flask import Flask, Response, jsonify, request, send_file
{% else %}
from flask import Flask, Response, jsonify
{% endif %}
from werkzeug.exceptions import HTTPException

{% if cookiecutter.include_examples %}
from . import examples, health
{% else %}
from . import health
{% endif %}
from .errors import ApiError, error_body

FRAMEWORK = "flask"

app = Flask(__name__)
# nginx refuses larger bodies with 413 first; this guards direct connections.
app.config["MAX_CONTENT_LENGTH"] = 1 << 20
app.json.sort_keys = False
# "/api/counters//incr" is a missing name (404), not a redirect to another URL.
app.url_map.merge_slashes = False


def answer(result: tuple[int, dict]) -> Response:
    status, payload = result
    response = jsonify(payload)
    response.status_code = status
    return response


@app.errorhandler(ApiError)
def api_error(exc: ApiError) -> Response:
    return answer((exc.status, exc.body()))


@app.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    return answer((exc.code or 500, error_body(code, exc.description or exc.name)))


@app.errorhandler(Exception)
def unexpected_error(exc: Exception) -> Response:
    app.logger.exception("unhandled error")
    return answer((500, error_body("internal_error", "The server failed; the error was logged.")))


@app.get("/healthz")
def healthz() -> Response:
    return answer(health.healthz())


@app.get("/readyz")
def readyz() -> Response:
    return answer(health.readyz())
{% if cookiecutter.include_examples %}


@app.get("/api/worker")
def worker() -> Response:
    return answer(examples.worker(FRAMEWORK))


@app.post("/api/counters/<name>/incr")
def incr_counter(name: str) -> Response:
    return answer(examples.incr_counter(name, request.get_data()))


@app.get("/api/counters/<name>")
def get_counter(name: str) -> Response:
    return answer(examples.get_counter(name))


@app.post("/api/locked-increment/<name>")
def locked_increment(name: str) -> Response:
    return answer(examples.locked_increment(name, request.get_data()))


@app.post("/api/exports")
def create_export() -> Response:
    return answer(examples.create_export(request.get_data()))


@app.get("/api/exports/<export_id>")
def get_export(export_id: str) -> Response:
    return answer(examples.get_export(export_id))


@app.get("/api/exports/<export_id>/download")
def download_export(export_id: str) -> Response:
    download = examples.download(export_id)
    if download.path is None:
        # nginx sends the file; the empty body keeps this worker out of the transfer.
        return Response(b"", headers=download.headers)
    # Development only (EXPORT_DELIVERY=direct, no nginx): the worker sends the bytes.
    response = send_file(download.path, mimetype="text/plain")
    response.headers["Content-Disposition"] = download.headers["Content-Disposition"]
    return response


@app.post("/api/tasks/run")
def run_task() -> Response:
    return answer(examples.run_task(request.get_data()))
{% endif %}
