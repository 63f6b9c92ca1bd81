"""One table maps toolkit errors to HTTP; nginx's own error pages use the same codes."""

import re
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import errors, replies

NGINX_APP_CONF = Path("deploy/nginx/app.conf.template")
# nginx's table of its own errors: `map $status $error_code { 404 not_found; ... }`.
NGINX_ERROR_CODES = re.compile(r"map \$status \$error_code \{(.*?)\}", re.DOTALL)
NGINX_ERROR_CODE = re.compile(r"^\s*(\d{3})\s+(\w+);", re.MULTILINE)


def nginx_error_codes() -> dict[int, str]:
    text = NGINX_APP_CONF.read_text(encoding="utf-8")
    table = NGINX_ERROR_CODES.search(text)
    assert table, "app.conf.template has no map $status $error_code"
    return {int(status): code for status, code in NGINX_ERROR_CODE.findall(table.group(1))}


def test_nginx_and_the_app_name_each_status_alike():
    from_nginx = nginx_error_codes()
    assert set(from_nginx) >= {403, 404, 405, 413, 500, 502, 503, 504}
    assert set(from_nginx) >= {400, 412, 414, 416, 431, 501, 505}
    for status, code in from_nginx.items():
        assert replies.STATUS_CODES[status] == code, status


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.InvalidInput("invalid_name", "bad"), 400, "invalid_name"),
        (errors.NotFound("export"), 404, "not_found"),
        (errors.LockTimeout("x", 1.0), 409, "lock_timeout"),
        (errors.LockLost("x"), 409, "lock_lost"),
        (errors.BackendUnavailable("TimeoutError"), 503, "backend_unavailable"),
        (errors.InsufficientStorage(10), 507, "insufficient_storage"),
    ],
)
def test_every_toolkit_error_has_one_answer(error, status, code):
    reply = replies.error_reply(error)
    assert (reply.status, reply.body["error"]["code"]) == (status, code)
    assert reply.body["error"]["message"] == str(error)


def test_every_toolkit_error_class_is_in_the_table():
    classes = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServiceError)
    }
    assert classes - {errors.ServiceError} <= set(replies.ERRORS)


def test_a_download_is_an_empty_body_for_nginx_or_a_file_for_direct_delivery(tmp_path):
    accel = replies.download_reply(
        filename="a.txt", content_type="text/plain", accel_path="/_internal/exports/x", file=None
    )
    assert accel.body is None and accel.file is None
    assert accel.headers["X-Accel-Redirect"] == "/_internal/exports/x"
    direct = replies.download_reply(
        filename="a.txt", content_type="text/plain", accel_path="/x", file=tmp_path
    )
    assert direct.file == tmp_path and "X-Accel-Redirect" not in direct.headers
