"""The rendered nginx configuration: the properties a multi-worker service relies on.

No servers run here; when nginx is installed, `nginx -t` checks each render.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from stack import render_nginx
from stack.errors import StackError
from stack.nginx import NginxSite, render, write_config
from stack.project import NGINX_TEMPLATES, GunicornSettings, find_program

WORKER_CLASSES = ["sync", "gthread", "gevent"]
LOCATION = re.compile(r"location\s+(?:\^~\s+|=\s+)?(\S+)\s*\{")


def site(tmp_path: Path, worker_class: str = "gthread", **gunicorn: int) -> NginxSite:
    settings = {"timeout": 30, "keepalive": 2, "graceful_timeout": 25, **gunicorn}
    settings.setdefault("nginx_read_timeout", settings["timeout"] + 30)
    return NginxSite(
        conf_dir=tmp_path / "nginx",
        listen="127.0.0.1:18080",
        gunicorn_socket=tmp_path / "gunicorn.sock",
        export_dir=tmp_path / "exports",
        static_dir=tmp_path / "static",
        gunicorn=GunicornSettings(worker_class=worker_class, **settings),
    )


def rendered(tmp_path: Path, worker_class: str = "gthread", **gunicorn: int) -> tuple[str, str]:
    conf = write_config(site(tmp_path, worker_class, **gunicorn))
    return conf.read_text(), (conf.parent / "app.conf").read_text()


def without_comments(text: str) -> str:
    # A quote in a comment ("nginx's") would otherwise open a string below.
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def locations(app_conf: str) -> dict[str, str]:
    """Each location's body, up to its closing brace; braces in quotes do not count."""
    app_conf = without_comments(app_conf)
    found = {}
    for match in LOCATION.finditer(app_conf):
        depth, quote, end = 1, "", match.end()
        while depth:
            char = app_conf[end]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            else:
                depth += {"{": 1, "}": -1}.get(char, 0)
            end += 1
        found[match.group(1)] = app_conf[match.end() : end - 1]
    return found


def directives(text: str) -> list[str]:
    """Directive lines without comments, so a comment cannot satisfy a check."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_no_placeholder_is_left(tmp_path: Path, worker_class: str) -> None:
    for text in rendered(tmp_path, worker_class):
        assert "${" not in text


def test_alias_locations_and_aliases_end_in_a_slash(tmp_path: Path) -> None:
    _, app_conf = rendered(tmp_path)
    found = {
        path: re.search(r'alias\s+"?([^";]+)"?;', body)
        for path, body in locations(app_conf).items()
    }
    aliased = {path: match.group(1) for path, match in found.items() if match}
    assert set(aliased) == {"/static/", "/_internal/exports/"}
    for path, target in aliased.items():
        assert path.endswith("/") and target.endswith("/"), (path, target)
    assert aliased["/_internal/exports/"] == f"{tmp_path}/exports/files/"
    assert aliased["/static/"] == f"{tmp_path}/static/"


def test_exports_are_internal_only(tmp_path: Path) -> None:
    _, app_conf = rendered(tmp_path)
    body = locations(app_conf)["/_internal/exports/"]
    assert "internal;" in directives(body)
    assert "internal;" in directives(locations(app_conf)["/_internal/"])


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_no_upstream_connection_is_kept_alive(tmp_path: Path, worker_class: str) -> None:
    """A kept-alive connection ties requests to one worker, busy or not."""
    nginx_conf, _ = rendered(tmp_path, worker_class)
    assert not any(line.startswith("keepalive") for line in directives(nginx_conf))


def test_read_timeout_is_above_gunicorns(tmp_path: Path) -> None:
    _, app_conf = rendered(tmp_path, timeout=7)
    assert "proxy_read_timeout 37s;" in directives(app_conf)


def test_proxy_settings_a_multi_worker_service_relies_on(tmp_path: Path) -> None:
    _, app_conf = rendered(tmp_path)
    lines = directives(app_conf)
    for expected in (
        "proxy_buffering on;",
        "proxy_request_buffering on;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Request-ID $req_id;",
        "add_header X-Request-ID $req_id always;",
        "client_max_body_size 1m;",
        "server_tokens off;",
    ):
        assert expected in lines, expected
    assert "proxy_buffering off;" not in lines
    assert not any("non_idempotent" in line for line in lines)
    assert not any("$proxy_add_x_forwarded_for" in line for line in lines)


def error_pages(app_conf: str) -> dict[str, str]:
    """Each status an error_page names, and what follows the status list."""
    pages = {}
    for line in directives(app_conf):
        if line.startswith("error_page "):
            words = line.removesuffix(";").split()[1:]
            statuses = [word for word in words if word.isdigit()]
            for status in statuses:
                pages[status] = " ".join(words[len(statuses) :])
    return pages


def blocks(text: str, opening: str) -> list[str]:
    """The body of every block that opens with `opening` (up to its closing brace)."""
    text = without_comments(text)
    found = []
    for match in re.finditer(re.escape(opening) + r"\s*\{", text):
        depth, quote, end = 1, "", match.end()
        while depth:
            char = text[end]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            else:
                depth += {"{": 1, "}": -1}.get(char, 0)
            end += 1
        found.append(text[match.end() : end - 1])
    return found


def test_nginx_errors_answer_json_with_their_own_status(tmp_path: Path) -> None:
    _, app_conf = rendered(tmp_path)
    pages = error_pages(app_conf)
    # Before nginx knows the Host (400, 414, 494, 505) as well as after it.
    for status in ("400", "403", "404", "412", "413", "414", "416", "500", "501"):
        assert pages[status] == "/_internal/error", (status, pages)
    for status in ("502", "503", "504", "505"):
        assert pages[status] == "/_internal/error", (status, pages)
    assert pages["494"] == "=431 /_internal/error"
    assert pages["405"] == "= $method_not_allowed"
    (table,) = blocks(app_conf, "map $status $error_code")
    codes = dict(line.removesuffix(";").split() for line in directives(table))
    for status in {*pages, "431"} - {"494"}:
        assert status in codes, status
    assert codes["404"] == "not_found" and codes["413"] == "request_too_large"
    assert codes["502"] == "upstream_unavailable" and codes["504"] == "upstream_timeout"
    assert codes["503"] == "busy"
    # One error location in each server: JSON whatever the URI's extension says.
    servers = blocks(app_conf, "server")
    assert len(servers) == 2
    for server in servers:
        (body,) = blocks(server, "location = /_internal/error")
        lines = directives(body)
        assert "internal;" in lines and "default_type application/json;" in lines
        assert blocks(body, "types") == [" "], body
        assert '"code": "$error_code", "message": "$error_message"' in body
    # nginx's own 405s (its files) say what the file allows; TRACE goes to the app.
    (refused,) = [s for s in servers if "location @error_405" in s]
    (body,) = blocks(refused, "location @error_405")
    assert 'add_header Allow "GET, HEAD" always;' in directives(body)
    assert "proxy_pass $app_upstream;" in directives(blocks(refused, "location @trace")[0])


def test_only_uppercase_brace_placeholders_are_ours() -> None:
    text = "a ${NAME} $request_id ${lower} $$ $NAME {1,128}$"
    assert render(text, {"NAME": "x"}) == "a x $request_id ${lower} $$ $NAME {1,128}$"
    with pytest.raises(StackError, match="MISSING"):
        render("a ${MISSING}", {})


def test_paths_nginx_would_misread_are_refused(tmp_path: Path) -> None:
    bad = site(tmp_path / "with$dollar")
    with pytest.raises(StackError, match="absolute path"):
        write_config(bad)


def test_templates_are_plain_nginx_without_jinja() -> None:
    # Spelled in pieces: this test file itself goes through Jinja at generation.
    markers = ("{" + "{", "{" + "%", "{" + "#")
    for template in NGINX_TEMPLATES.glob("*.template"):
        text = template.read_text()
        assert not any(marker in text for marker in markers), template


def nginx_t(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a rendered config; a missing nginx fails with what to install."""
    try:
        nginx = find_program("nginx")
    except StackError as exc:
        pytest.fail(str(exc))
    return subprocess.run(
        [nginx, "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_nginx_accepts_the_render(tmp_path: Path, worker_class: str) -> None:
    check = nginx_t(write_config(site(tmp_path, worker_class)))
    assert check.returncode == 0, check.stderr


def test_render_nginx_command_output_passes_nginx_t(tmp_path: Path) -> None:
    check = nginx_t(render_nginx(tmp_path / "render"))
    assert check.returncode == 0, check.stderr
