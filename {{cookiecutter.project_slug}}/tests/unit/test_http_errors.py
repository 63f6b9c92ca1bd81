"""One table maps toolkit errors to HTTP; nginx's own error pages use the same codes."""

import re
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import errors, http_errors

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
        assert http_errors.STATUS_CODES[status] == code, status


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
    answered, body, headers = http_errors.answer(error)
    assert (answered, body["error"]["code"]) == (status, code)
    assert body["error"]["message"] == str(error)
    assert headers == {}


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (errors.RateLimited(0.2), 429, "1"),
        (errors.RateLimited(2.5), 429, "3"),
        (errors.Busy("tasks", 2), 503, "2"),
    ],
)
def test_an_error_that_says_when_to_come_back_answers_with_retry_after(error, status, retry_after):
    answered, _, headers = http_errors.answer(error)
    assert (answered, headers) == (status, {"Retry-After": retry_after})


def test_a_frameworks_own_refusal_has_nginxs_code():
    assert http_errors.refusal(405, "no")["error"]["code"] == "method_not_allowed"
    assert http_errors.refusal(418, "no")["error"]["code"] == "error"
    assert http_errors.refusal(599, "no")["error"]["code"] == "internal_error"


def test_every_toolkit_error_class_is_in_the_table():
    classes = {
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ServiceError)
    }
    assert classes - {errors.ServiceError} <= set(http_errors.ERRORS)
