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
import resource
import string
from dataclasses import dataclass
from pathlib import Path

from stack.errors import StackError
from stack.project import NGINX_TEMPLATES, GunicornSettings

APP_TEMPLATE = "app.conf.template"
STACK_TEMPLATE = "stack.conf.template"

# Who may read /metrics when METRICS_ALLOW_FROM is unset: loopback (the stack listens
# there only; the container entrypoint adds its compose network instead).
METRICS_ALLOW_DEFAULT = "127.0.0.0/8 ::1"
# Connections of the one nginx worker, when the file limit allows: a request in
# flight holds two, so this admits about 2,000 at once, twice the rate limit's burst.
WORKER_CONNECTIONS = 4096
# Connections kept out of the in-flight limit: idle keep-alive clients, health probes.
SPARE_CONNECTIONS = 256
# One client's share of the requests in flight (app.conf's per_client zone).
CONN_PER_CLIENT = 512

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


@dataclass(frozen=True)
class Connections:
    """nginx's file and connection limits, and app.conf's limits on requests in flight."""

    rlimit_nofile: int
    worker_connections: int
    total: int
    per_client: int

    @classmethod
    def within(cls, hard_nofile: int) -> Connections:
        """The largest figures up to WORKER_CONNECTIONS that `hard_nofile` allows."""
        if hard_nofile == resource.RLIM_INFINITY:
            hard_nofile = 1 << 20
        rlimit = min(hard_nofile, 2 * WORKER_CONNECTIONS + SPARE_CONNECTIONS)
        worker = min(WORKER_CONNECTIONS, (rlimit - SPARE_CONNECTIONS) // 2)
        total = (worker - SPARE_CONNECTIONS) // 2
        if total < 16:
            raise StackError(
                f"The open-file limit ({hard_nofile}) leaves nginx too few connections; "
                "raise it (ulimit -Hn) to at least 1024."
            )
        return cls(rlimit, worker, total, min(CONN_PER_CLIENT, total))


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
    connections = Connections.within(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
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
        "NGINX_CONN_PER_CLIENT": str(connections.per_client),
        "NGINX_CONN_TOTAL": str(connections.total),
        # stack.conf
        "NGINX_USER_DIRECTIVE": user_directive(),
        "NGINX_DIR": _path(site.conf_dir, "nginx directory"),
        "GUNICORN_SOCKET": _path(site.gunicorn_socket, "gunicorn socket"),
        "APP_CONF": _path(site.app_conf, "app.conf"),
        "NGINX_RLIMIT_NOFILE": str(connections.rlimit_nofile),
        "NGINX_WORKER_CONNECTIONS": str(connections.worker_connections),
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
