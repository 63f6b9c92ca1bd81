"""The container files, checked without a container engine.

What can be proven statically is proven here, in seconds: compose.yaml
against the compose specification's schema and against the claims its
comments make, the environment it gives gunicorn, the Dockerfile with
hadolint, and the nginx config the containers render, with `nginx -t`.
test_compose_stack.py then runs the stack in a real engine.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import TOOLS_BIN, Project, check, clean_env, env_file, interpolate

# Variables gunicorn reads itself, before (or beside) gunicorn.conf.py: passed
# empty, WEB_CONCURRENCY kills it at import (int('')), the others change what it does.
GUNICORN_OWN_VARIABLES = {"WEB_CONCURRENCY", "PORT", "SENDFILE", "FORWARDED_ALLOW_IPS"}


@pytest.fixture(scope="module")
def project(generate) -> Project:
    return generate()


@pytest.fixture(scope="module")
def compose(project) -> dict:
    return yaml.safe_load((project.path / "compose.yaml").read_text())


def test_compose_matches_the_compose_specification(project):
    result = project.run(
        TOOLS_BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_are_wired_as_claimed(compose):
    assert "version" not in compose
    services = compose["services"]
    assert set(services) == {"nginx", "web", "redis"}
    # Only nginx is reachable from outside.
    assert [name for name, svc in services.items() if "ports" in svc] == ["nginx"]
    assert services["web"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["web"]["init"] is True
    # Scaling needs containers without fixed names or host ports.
    assert "container_name" not in services["web"]


def test_redis_never_evicts_and_fails_its_health_check_on_auth_errors(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    # Bounded, so a flood of keys is 507 (writes refused) rather than the host's memory.
    assert command[command.index("--maxmemory") + 1] == "${REDIS_MAXMEMORY:-256mb}"
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "-e", "ping"]
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")


def test_web_outlives_gunicorns_graceful_timeout(project, compose):
    web = compose["services"]["web"]
    grace = int(web["stop_grace_period"].removesuffix("s"))
    graceful = project.resolved_gunicorn_settings()["graceful_timeout"]
    assert grace > graceful


def test_nginx_uses_the_stacks_config_source_and_reads_exports_only(compose):
    volumes = compose["services"]["nginx"]["volumes"]
    assert any(v.startswith("./deploy/nginx/app.conf.template:") for v in volumes)
    assert "exports:/srv/exports:ro" in volumes
    assert "exports:/srv/exports" in compose["services"]["web"]["volumes"]


def test_every_variable_compose_reads_is_documented(project):
    used = set(re.findall(r"\$\{(\w+)", (project.path / "compose.yaml").read_text()))
    example = (project.path / ".env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"


def test_dockerfile_passes_hadolint_and_runs_as_non_root(project):
    result = project.run(TOOLS_BIN / "hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (project.path / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .+$", dockerfile, flags=re.MULTILINE)
    assert len(stages) >= 2, "a build stage and a slim runtime stage"
    runtime = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert re.search(r"^USER 10001", runtime, flags=re.MULTILINE)
    healthcheck = re.search(r"^HEALTHCHECK .*\n.*$", runtime, flags=re.MULTILINE)
    assert healthcheck and "python" in healthcheck[0] and "curl" not in healthcheck[0]
    assert not re.search(r"\b(gcc|build-essential)\b", runtime)
    assert "COPY gunicorn.conf.py" in runtime


def test_the_container_nginx_config_passes_nginx_t(project, compose, tmp_path):
    """Render the templates as the nginx image's entrypoint does, then `nginx -t`."""
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    assert nginx, "nginx is not installed; `make test` installs it"
    service = compose["services"]["nginx"]
    env = {
        k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in service["environment"].items()
    }
    # The entrypoint sources the *.envsh files before it renders: /metrics' allow list.
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if target.startswith("/docker-entrypoint.d/") and target.endswith(".envsh"):
            access = sourced(project.path / source, env)["NGINX_METRICS_ACCESS"]
            env["NGINX_METRICS_ACCESS"] = access
    assert "NGINX_METRICS_ACCESS" in env
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if target.startswith("/etc/nginx/templates/"):
            template = string.Template((project.path / source).read_text())
            # envsubst replaces only variables that are defined; nginx's own stay.
            rendered = template.safe_substitute(env)
            (conf_d / Path(target).name.removesuffix(".template")).write_text(rendered)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / name).mkdir()
    main = f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {conf_d}/*.conf;
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "error.log"),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "resolver 127.0.0.11" in (conf_d / "default.conf").read_text()


def sourced(script: Path, env: dict[str, str]) -> dict[str, str]:
    """The variables a POSIX sh has after sourcing `script` with `env`, as the nginx
    image's entrypoint does (its shell is busybox's; dash here)."""
    done = subprocess.run(
        ["sh", "-eu", "-c", '. "$0" >/dev/null && env -0', str(script)],
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)


def test_metrics_are_allowed_to_loopback_and_the_containers_networks_only(project):
    script = project.path / "deploy" / "nginx" / "metrics-access.envsh"
    assert os.access(script, os.X_OK), "the entrypoint skips a script that is not executable"
    access = sourced(script, {})["NGINX_METRICS_ACCESS"]
    assert "allow 127.0.0.0/8;" in access and access.endswith("deny all;")
    # The default route's gateway (how a published port's traffic may arrive) is refused
    # before its network is allowed.
    gateways = re.findall(r"deny (\d+\.\d+\.\d+\.\d+);", access)
    assert gateways, access
    given = sourced(script, {"METRICS_ALLOW_FROM": "10.0.0.0/8, ::1"})["NGINX_METRICS_ACCESS"]
    assert given == "allow 10.0.0.0/8; allow ::1; deny all;"
    refused = subprocess.run(
        ["sh", "-eu", "-c", '. "$0"', str(script)],
        env={**clean_env(), "METRICS_ALLOW_FROM": "10.0.0.1; allow all"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "METRICS_ALLOW_FROM" in refused.stderr


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_nginx_waits_longer_than_gunicorn_in_compose(project, compose, worker_class):
    setting = compose["services"]["nginx"]["environment"]["NGINX_PROXY_READ_TIMEOUT"]
    nginx_wait = int(re.fullmatch(r"\$\{\w+:-(\d+)s\}", setting)[1])
    gunicorn = project.resolved_gunicorn_settings(GUNICORN_WORKER_CLASS=worker_class)
    assert nginx_wait > gunicorn["timeout"]


def web_environment(compose: dict, variables: dict[str, str]) -> dict[str, str]:
    environment = compose["services"]["web"]["environment"]
    return {name: interpolate(str(value), variables) for name, value in environment.items()}


@pytest.mark.parametrize("dot_env", ["written at generation", "only a password"])
def test_gunicorn_starts_with_the_environment_compose_gives(project, compose, dot_env, tmp_path):
    if dot_env == "only a password":
        # What compose refuses to start without (${VAR:?...}), and nothing else.
        variables = {"REDIS_PASSWORD": "secret0", "DJANGO_SECRET_KEY": "k" * 50}
    else:
        # The example's settings with drawn secrets (scripts/dot_env.py; test_secrets.py).
        variables = env_file(project.path / ".env")
    environment = web_environment(compose, variables)
    empty = sorted(n for n in GUNICORN_OWN_VARIABLES & set(environment) if not environment[n])
    assert not empty, f"compose passes {empty} empty, and gunicorn reads them itself"

    project.install()
    environment["EXPORT_DIR"] = str(tmp_path / "exports")
    gunicorn = project.python.parent / "gunicorn"
    result = project.run(
        gunicorn, "--check-config", "-c", "gunicorn.conf.py", env=clean_env(**environment)
    )
    check(result, "gunicorn --check-config with the web container's environment")


def test_an_empty_web_concurrency_does_kill_gunicorn(project):
    """Why compose never passes WEB_CONCURRENCY: the hazard the test above guards."""
    project.install()
    gunicorn = project.python.parent / "gunicorn"
    env = clean_env(WEB_CONCURRENCY="", REDIS_URL="redis://127.0.0.1:1/0")
    result = project.run(gunicorn, "--check-config", "-c", "gunicorn.conf.py", env=env)
    assert result.returncode != 0
    assert "invalid literal for int()" in result.stderr, result.stderr


def test_nginx_outlives_webs_drain(project, compose):
    """compose stops nginx first; it must finish the requests web is still serving."""

    def grace(service: str) -> int:
        return int(compose["services"][service]["stop_grace_period"].removesuffix("s"))

    graceful = project.resolved_gunicorn_settings()["graceful_timeout"]
    assert grace("nginx") > grace("web") > graceful


def test_dockerfile_pulls_no_frontend_and_takes_its_base_from_a_variable(project, compose):
    dockerfile = (project.path / "Dockerfile").read_text()
    # A `# syntax=` directive makes BuildKit pull a frontend image from a registry.
    assert not re.search(r"^#\s*syntax\s*=", dockerfile, flags=re.IGNORECASE | re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE) == ["${PYTHON_IMAGE}"] * 2
    args = compose["services"]["web"]["build"]["args"]
    assert args["PYTHON_IMAGE"].startswith("${PYTHON_IMAGE:-python:3.11")
    for service, variable in (("nginx", "NGINX_IMAGE"), ("redis", "REDIS_IMAGE")):
        assert compose["services"][service]["image"].startswith(f"${{{variable}:-"), service


def test_a_removed_container_costs_a_request_at_most_a_second(project):
    """After a scale-down, requests that pick a removed container's address wait
    for the connect to fail, once per dead address: measured 10 s at nginx's 5 s."""
    deploy = project.path / "deploy" / "nginx"
    container = (deploy / "container.conf.template").read_text()
    assert re.search(r"^proxy_connect_timeout 1s;$", container, flags=re.MULTILINE)
    # No location overrides what the wrapper sets.
    assert "proxy_connect_timeout" not in re.sub(
        r"#.*", "", (deploy / "app.conf.template").read_text()
    )
