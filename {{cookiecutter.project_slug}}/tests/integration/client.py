"""HTTP helpers shared by the integration tests.

Every call carries a timeout, names are unique per run, and error answers are
checked against the one JSON error shape of the contract. Plain `requests`,
`http.client` and threads, so the suite runs unchanged against any framework.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

# Seconds; no HTTP call in the suite may wait longer than this.
TIMEOUT = 15.0
# The two codes the contract allows for a body of the wrong shape.
SHAPE_CODES = frozenset({"invalid_json", "invalid_request"})

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name that is valid under the contract and unique to this call."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Client:
    """Thin wrapper over `requests` that prefixes the base URL and sets a timeout."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        timeout = kwargs.pop("timeout", TIMEOUT)
        return requests.request(method, self.url(path), timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def raw(
        self,
        method: str,
        raw_path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        """Send `raw_path` byte for byte (no dot-segment removal, no re-quoting)."""
        parts = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=TIMEOUT)
        try:
            conn.request(method, raw_path, body=body, headers=headers or {})
            resp = conn.getresponse()
            content = resp.read()
            return RawResponse(
                method=method,
                url=self.base_url + raw_path,
                status_code=resp.status,
                headers={k.lower(): v for k, v in resp.getheaders()},
                content=content,
            )
        finally:
            conn.close()


@dataclass
class RawResponse:
    """The parts of a `requests.Response` that the assertions below use."""

    method: str
    url: str
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def header(resp: requests.Response | RawResponse, name: str) -> str:
    if isinstance(resp, RawResponse):
        return resp.header(name) or ""
    return resp.headers.get(name, "")


def describe(resp: requests.Response | RawResponse) -> str:
    """One line for assertion messages: what was asked and what came back."""
    if isinstance(resp, RawResponse):
        method, url = resp.method, resp.url
    else:
        method, url = resp.request.method, resp.request.url
    return f"{method} {url} -> {resp.status_code} {resp.text[:600]!r}"


def assert_json(resp: requests.Response | RawResponse, status: int) -> Any:
    """Status as expected, a JSON content type, a JSON body, no traceback."""
    assert resp.status_code == status, describe(resp)
    assert "Traceback" not in resp.text, describe(resp)
    media_type = header(resp, "Content-Type").split(";")[0].strip().lower()
    assert media_type == "application/json", f"Content-Type {media_type!r}: {describe(resp)}"
    try:
        return resp.json()
    except ValueError:
        raise AssertionError(f"body is not JSON: {describe(resp)}") from None


def assert_error(
    resp: requests.Response | RawResponse,
    status: int,
    codes: Iterable[str] | str | None = None,
) -> dict[str, Any]:
    """The contract's error with `status`: an "error" object with a code and a message."""
    body = assert_json(resp, status)
    assert isinstance(body, dict), describe(resp)
    error = body.get("error")
    assert isinstance(error, dict), describe(resp)
    code, message = error.get("code"), error.get("message")
    assert isinstance(code, str) and code, describe(resp)
    assert isinstance(message, str) and message, describe(resp)
    if codes is not None:
        allowed = {codes} if isinstance(codes, str) else set(codes)
        assert code in allowed, f"code {code!r} not in {sorted(allowed)}: {describe(resp)}"
    return error


def run_concurrently(calls: list[Callable[[], T]], threads: int) -> list[T]:
    """Run the calls on `threads` threads at once; results in call order, errors raised."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def processes_mentioning(needle: str) -> list[tuple[int, str]]:
    """Live processes on this host whose command line contains `needle`."""
    found = []
    wanted = needle.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if wanted in cmdline:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


HEX32 = re.compile(r"[0-9a-f]{32}")
