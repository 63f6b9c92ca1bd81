"""Render the one nginx configuration source for the local stack.

deploy/nginx/app.conf.template (servers and locations, shared by every way the
service runs) and stack.conf.template (the main-context wrapper for a
non-root nginx) carry dollar-brace UPPERCASE placeholders; nginx's own
lowercase $variables are left alone. Values nginx depends on, such as the
read timeout, are derived from gunicorn's resolved settings.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

from stack.errors import StackError
from stack.project import NGINX_TEMPLATES, GunicornSettings

APP_TEMPLATE = "app.conf.template"
STACK_TEMPLATE = "stack.conf.template"

# nginx's upstream idle timeout; gunicorn's keepalive must be longer, or a
# request can land on a connection gunicorn is closing and get a 502.
UPSTREAM_IDLE_SECONDS = 60
# How much longer than nginx gunicorn must keep an idle connection open.
KEEPALIVE_MARGIN_SECONDS = 5
# Idle connections nginx keeps open to gunicorn.
UPSTREAM_IDLE_CONNECTIONS = 16
# Who may read /metrics when METRICS_ALLOW_FROM is unset: loopback (the stack listens
# there only; the container entrypoint adds its compose network instead).
METRICS_ALLOW_DEFAULT = "127.0.0.0/8 ::1"

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_BODY_SIZE = re.compile(r"[0-9]+[kKmMgG]?")
_SERVER_NAME = re.compile(r"[A-Za-z0-9.*~_-][A-Za-z0-9.*_-]*")
# Characters that would end a quoted nginx string or start a variable.
_UNSAFE_IN_PATH = re.compile(r'["\\$\x00-\x1f\x7f]')


class _Template(string.Template):
    """string.Template that knows only `${UPPERCASE}`; `$var` and `$$` stay as written."""

    flags = 0
    pattern = r"""
        \$(?:
          (?P<escaped>(?!)) |
          (?P<named>(?!)) |
          \{(?P<braced>[A-Z][A-Z0-9_]*)\} |
          (?P<invalid>(?!))
        )
    """


def render(text: str, values: dict[str, str], *, source: str = "template") -> str:
    """Fill our placeholders in `text`; a placeholder left unfilled is an error."""
    rendered = _Template(text).safe_substitute(values)
    missing = sorted(set(_PLACEHOLDER.findall(rendered)))
    if missing:
        raise StackError(f"{source} has placeholders without a value: {', '.join(missing)}.")
    return rendered


@dataclass(frozen=True)
class NginxSite:
    """Everything the rendered configuration depends on."""

    conf_dir: Path  # nginx's prefix: nginx.conf, app.conf, pid, logs, temp dirs
    listen: str  # e.g. "127.0.0.1:8080"
    gunicorn_socket: Path
    export_dir: Path
    static_dir: Path
    gunicorn: GunicornSettings
    server_names: str = ""
    client_max_body_size: str = "1m"
    access_log: Path | None = None
    # Addresses and networks that may read /metrics, separated by spaces or commas.
    metrics_allow_from: str = METRICS_ALLOW_DEFAULT

    @property
    def nginx_conf(self) -> Path:
        return self.conf_dir / "nginx.conf"

    @property
    def app_conf(self) -> Path:
        return self.conf_dir / "app.conf"

    @property
    def error_log(self) -> Path:
        return self.conf_dir / "error.log"

    @property
    def pid_file(self) -> Path:
        return self.conf_dir / "nginx.pid"


def _path(value: Path, what: str) -> str:
    text = str(value)
    if not value.is_absolute() or _UNSAFE_IN_PATH.search(text):
        raise StackError(
            f"{what} {text!r} cannot go into nginx's configuration: it must be an "
            'absolute path without quotes, backslashes, "$" or control characters.'
        )
    return text.rstrip("/") or "/"


def upstream_keepalive(gunicorn: GunicornSettings) -> str:
    """The upstream block's keepalive lines, or a comment saying why there are none."""
    if not gunicorn.keeps_connections:
        return (
            f"# No idle connections kept for the {gunicorn.worker_class} worker "
            "(gunicorn.conf.py's _KEEPS_CONNECTIONS says why)."
        )
    idle = min(UPSTREAM_IDLE_SECONDS, gunicorn.keepalive - KEEPALIVE_MARGIN_SECONDS)
    if idle < 1:
        return (
            f"# No idle connections kept: gunicorn's keepalive ({gunicorn.keepalive} s) "
            "is too short for nginx to close them first."
        )
    return (
        f"# Idle connections reused; nginx closes them after {idle} s, before gunicorn\n"
        f"        # does ({gunicorn.keepalive} s), so no request meets a closing socket.\n"
        f"        keepalive {UPSTREAM_IDLE_CONNECTIONS};\n"
        f"        keepalive_timeout {idle}s;"
    )


def metrics_access(allow_from: str) -> str:
    """nginx's allow/deny lines for /metrics: each address or network, then nobody else."""
    allowed = []
    for item in allow_from.replace(",", " ").split():
        try:
            allowed.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise StackError(
                f"METRICS_ALLOW_FROM holds {item!r}, which is not an address or network "
                "(e.g. 127.0.0.1, 10.0.0.0/8, ::1)."
            ) from None
    return " ".join([*(f"allow {network};" for network in allowed), "deny all;"])


def user_directive() -> str:
    """`user` only as root: then nginx's workers would otherwise run as nobody."""
    if os.geteuid() != 0:
        return "# Not root: nginx's workers run as this user."
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"


def values(site: NginxSite) -> dict[str, str]:
    body_size = site.client_max_body_size.strip()
    if not _BODY_SIZE.fullmatch(body_size):
        raise StackError(
            f"NGINX_CLIENT_MAX_BODY_SIZE must look like 1m, 512k or 1048576, not {body_size!r}."
        )
    names = site.server_names.split()
    for name in names:
        if not _SERVER_NAME.fullmatch(name):
            raise StackError(f"NGINX_SERVER_NAMES holds {name!r}, which is not a host name.")
    return {
        # app.conf
        "NGINX_LISTEN": site.listen,
        "NGINX_SERVER_NAMES": " ".join(names),
        "NGINX_CLIENT_MAX_BODY_SIZE": body_size,
        "NGINX_PROXY_READ_TIMEOUT": f"{site.gunicorn.nginx_read_timeout}s",
        "NGINX_ACCESS_LOG": _path(site.access_log or site.conf_dir / "access.log", "access log"),
        "STATIC_DIR": _path(site.static_dir, "static directory"),
        "EXPORT_DIR": _path(site.export_dir, "EXPORT_DIR"),
        "NGINX_METRICS_ACCESS": metrics_access(site.metrics_allow_from),
        # stack.conf
        "NGINX_USER_DIRECTIVE": user_directive(),
        "NGINX_DIR": _path(site.conf_dir, "nginx directory"),
        "GUNICORN_SOCKET": _path(site.gunicorn_socket, "gunicorn socket"),
        "UPSTREAM_KEEPALIVE": upstream_keepalive(site.gunicorn),
        "APP_CONF": _path(site.app_conf, "app.conf"),
    }


def write_config(site: NginxSite, templates: Path = NGINX_TEMPLATES) -> Path:
    """Render both templates into `site.conf_dir`; returns the nginx.conf path."""
    filled = values(site)
    site.conf_dir.mkdir(parents=True, exist_ok=True)
    for template, target in (
        (APP_TEMPLATE, site.app_conf),
        (STACK_TEMPLATE, site.nginx_conf),
    ):
        source = templates / template
        try:
            text = source.read_text()
        except OSError as exc:
            raise StackError(f"cannot read the nginx template {source}: {exc}.") from exc
        target.write_text(render(text, filled, source=str(source)))
    return site.nginx_conf
