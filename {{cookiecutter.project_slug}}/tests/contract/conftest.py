"""An in-process client for this project's framework, on the embedded backend.

No nginx, no gunicorn, no Redis: the framework's own test client calls the
app directly, so the contract table below runs in seconds on every adapter.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

# The embedded backend in a scratch directory.
_scratch = tempfile.mkdtemp(prefix="contract-")
SETTINGS = {
    "REDIS_URL": "",
    "DATA_DIR": os.path.join(_scratch, "data"),
    "EXPORT_DIR": os.path.join(_scratch, "exports"),
    "EXPORT_DELIVERY": "accel",
}
{% if cookiecutter.framework == "django" %}
# Set before Django reads its settings: the runtime reads them once per process.
os.environ.update(SETTINGS)
os.environ.update(
    DJANGO_SETTINGS_MODULE="{{ cookiecutter.package_name }}.django_project.settings",
    DJANGO_SECRET_KEY="contract-tests-" + "x" * 50,
    DJANGO_ALLOWED_HOSTS="testserver",
)
{% endif %}
# What every framework answers of itself on each route: HEAD with GET, and OPTIONS.
IMPLICIT = {"HEAD", "OPTIONS"}
# A route's path in the description's syntax: Flask's "<name>", aiohttp's
# "{name}" and Django's "<str:name>" all become "{name}".
PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    def json(self) -> Any:
        import json

        return json.loads(self.content)


{% if cookiecutter.framework == "django" %}
@pytest.fixture(scope="session")
def call() -> Iterator:
    import django
    from django.core.management import call_command
    from django.test import Client

    django.setup()
    call_command("migrate", verbosity=0)
    client = Client()

    def send(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
        response = client.generic(method, path, data=body, content_type="application/json", **extra)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        return Answer(response.status_code, {k.lower(): v for k, v in response.items()}, content)

    yield send


@pytest.fixture(scope="session")
def mounted(call) -> set[tuple[str, str]]:
    """(method, path) of every route Django's URLconf serves. A view answers OPTIONS
    with the methods it serves, so the methods come from that, on a path each
    route's converters match (an export id is 32 hex digits, a name any segment)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    def walk(patterns, prefix: str) -> Iterator[str]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield "/" + PARAMETER.sub(r"{\1}", prefix + str(pattern.pattern))

    routes = set()
    for path in walk(get_resolver().url_patterns, ""):
        sample = re.sub(r"\{\w+\}", "x", path.replace("{export_id}", "0" * 32))
        allow = call("OPTIONS", sample).headers["allow"]
        routes |= {(m.strip(), path) for m in allow.split(",") if m.strip() not in IMPLICIT}
    return routes
{% elif cookiecutter.framework == "aiohttp" %}
@pytest.fixture(scope="session")
def call() -> Iterator:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from {{ cookiecutter.package_name }} import config
    from {{ cookiecutter.package_name }}.aiohttp_app import create_app

    # One loop for the whole session: the app's runtime belongs to the loop it opened in.
    with asyncio.Runner() as loop:

        async def start() -> TestClient:
            client = TestClient(TestServer(await create_app(config.load(SETTINGS))))
            await client.start_server()
            return client

        client = loop.run(start())

        async def request(method: str, path: str, body: bytes, headers: dict) -> Answer:
            headers = {"Content-Type": "application/json", **headers}
            async with client.request(method, path, data=body, headers=headers) as response:
                content = await response.read()
                headers_ = {k.lower(): v for k, v in response.headers.items()}
                return Answer(response.status, headers_, content)

        def send(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
            return loop.run(request(method, path, body, headers or {}))

        yield send
        loop.run(client.close())


@pytest.fixture(scope="session")
def mounted() -> set[tuple[str, str]]:
    """(method, path) of every route in the app's router, each served by the handler
    named as its operation in the description."""
    import asyncio

    from {{ cookiecutter.package_name }} import config, openapi
    from {{ cookiecutter.package_name }}.aiohttp_app import create_app

    app = asyncio.run(create_app(config.load(SETTINGS)))
    served = {
        (route.method, route.resource.canonical): route.handler.__name__
        for route in app.router.routes()
        if route.resource is not None and route.method not in IMPLICIT
    }
    described = {
        (method.upper(), path): item[method]["operationId"]
        for path, item in openapi.document()["paths"].items()
        for method in openapi.METHODS
        if method in item
    }
    named = {key: name for key, name in served.items() if key in described}
    assert named == {key: described[key] for key in named}, "a handler not named as its operation"
    return set(served)
{% else %}
@pytest.fixture(scope="session")
def flask_app() -> Any:
    """The app as gunicorn builds it, on this module's settings, not the environment."""
    from {{ cookiecutter.package_name }} import config
    from {{ cookiecutter.package_name }}.flask_app import create_app

    return create_app(config.load(SETTINGS))


@pytest.fixture(scope="session")
def call(flask_app) -> Iterator:
    client = flask_app.test_client()

    def send(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        response = client.open(
            path, method=method, data=body, headers=headers, content_type="application/json"
        )
        headers_ = {k.lower(): v for k, v in response.headers.items()}
        return Answer(response.status_code, headers_, response.get_data())

    yield send


@pytest.fixture(scope="session")
def mounted(flask_app) -> set[tuple[str, str]]:
    """(method, path) of every rule in the app's URL map."""
    return {
        (method, PARAMETER.sub(r"{\1}", rule.rule))
        for rule in flask_app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in IMPLICIT
    }
{% endif %}
