"""Exports are made per request, published atomically, and served intact by nginx."""

from __future__ import annotations

import hashlib
import re
import time
import uuid

import pytest
from client import (
    SHAPE_CODES,
    Client,
    assert_error,
    assert_json,
    describe,
    run_concurrently,
    unique,
)
from stacks import own_stack_or_skip

MiB = 1 << 20
SIZES = [200, 1000, 4096, 65_536, 100_003, MiB, 3 * MiB + 7, 5_000_000]
FILENAME = re.compile(r'filename="([^"]+)"')
# EXPORT_MAX_AGE_SECONDS of the stack whose exports expire: long enough to read one
# back on a loaded machine, short enough that the test waits seconds.
MAX_AGE = 3


def create(client: Client, label: str, size: int) -> dict:
    resp = client.post("/api/exports", json={"size_bytes": size, "label": label})
    meta = assert_json(resp, 201)
    assert meta["size"] == size, meta
    assert isinstance(meta["id"], str) and meta["id"], meta
    assert re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]), meta
    assert meta["download_url"] == f"/api/exports/{meta['id']}/download", meta
    return meta


def download(client: Client, meta: dict) -> bytes:
    resp = client.get(meta["download_url"])
    assert resp.status_code == 200, describe(resp)
    disposition = resp.headers.get("Content-Disposition", "")
    assert disposition.startswith("attachment"), disposition
    assert FILENAME.search(disposition), disposition
    assert "X-Accel-Redirect" not in resp.headers and "X-Sendfile" not in resp.headers, resp.headers
    body = resp.content
    assert len(body) == meta["size"], (len(body), meta)
    assert hashlib.sha256(body).hexdigest() == meta["sha256"], meta
    return body


def make_and_check(client: Client, label: str, size: int) -> dict:
    meta = create(client, label, size)
    body = download(client, meta)
    assert body.split(b"\n", 1)[0] == f"label={label}".encode(), body[:100]
    again = assert_json(client.get(f"/api/exports/{meta['id']}"), 200)
    for key in ("id", "size", "sha256", "download_url"):
        assert again[key] == meta[key], (again, meta)
    return meta


def test_concurrent_exports_download_intact(client: Client) -> None:
    jobs = [(unique(f"exp{i}"), SIZES[i % len(SIZES)] + i) for i in range(24)]
    metas = run_concurrently([lambda j=j: make_and_check(client, *j) for j in jobs], threads=8)
    assert len({m["id"] for m in metas}) == len(jobs), "two exports share an id"


def test_smallest_export_is_exactly_one_byte(client: Client) -> None:
    meta = create(client, unique("tiny"), 1)
    assert len(download(client, meta)) == 1


def test_working_area_is_empty_after_requests(stack, client: Client) -> None:
    jobs = [(unique(f"work{i}"), SIZES[i % len(SIZES)]) for i in range(8)]
    run_concurrently([lambda j=j: make_and_check(client, *j) for j in jobs], threads=8)
    for bad in ({"size_bytes": 0, "label": "x"}, {"size_bytes": 10, "label": "a b"}):
        assert_error(client.post("/api/exports", json=bad), 400)
    work = stack.export_dir / "work"
    leftovers = sorted(str(p) for p in work.rglob("*")) if work.exists() else []
    assert leftovers == [], f"left in the working area: {leftovers}"


def test_internal_location_is_not_reachable_from_outside(client: Client) -> None:
    label = unique("internal")
    meta = create(client, label, 4096)
    resp = client.get(meta["download_url"])
    assert resp.status_code == 200, describe(resp)
    filename = FILENAME.search(resp.headers["Content-Disposition"]).group(1)
    secret = resp.content
    for path in (
        f"/_internal/exports/{meta['id']}/{filename}",
        f"/_internal/exports/{meta['id']}/",
        "/_internal/exports/",
        f"/_internal/exports../files/{meta['id']}/{filename}",
    ):
        outside = client.raw("GET", path)
        assert outside.status_code == 404, describe(outside)
        assert secret not in outside.content, f"export bytes served at {path}"
        assert f"label={label}".encode() not in outside.content, path


def well_formed_unknown(real_id: str) -> str:
    """Same length and character classes as a real id, but a different value."""
    shift = {}
    for alphabet in ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        for i, ch in enumerate(alphabet):
            shift[ch] = alphabet[(i + 1) % len(alphabet)]
    return "".join(shift.get(ch, ch) for ch in real_id)


def test_unknown_and_malformed_ids_are_not_found(client: Client) -> None:
    real = create(client, unique("known"), 300)["id"]
    ids = [
        well_formed_unknown(real),
        uuid.uuid4().hex,
        str(uuid.uuid4()),
        "a" * 300,
        "x" * 1000,
        "%2e%2e",
        "a%20b",
        "..%2F..%2Fetc%2Fpasswd",
    ]
    for raw_id in ids:
        for suffix in ("", "/download"):
            resp = client.raw("GET", f"/api/exports/{raw_id}{suffix}")
            assert_error(resp, 404, "not_found")
            assert b"root:" not in resp.content, describe(resp)


@pytest.mark.parametrize(
    "path", ["/api/exports/../../etc/passwd", "/api/exports/../../etc/passwd/download"]
)
def test_traversal_paths_are_not_found(client: Client, path: str) -> None:
    resp = client.raw("GET", path)
    assert resp.status_code == 404, describe(resp)
    assert b"root:" not in resp.content, describe(resp)


@pytest.mark.parametrize(
    "body",
    [
        {"size_bytes": 0, "label": "ok"},
        {"size_bytes": -1, "label": "ok"},
        {"size_bytes": 2_147_483_649, "label": "ok"},
        {"size_bytes": "10", "label": "ok"},
        {"size_bytes": 1.5, "label": "ok"},
        {"size_bytes": True, "label": "ok"},
        {"label": "ok"},
        {"size_bytes": 10},
        {"size_bytes": 10, "label": ""},
        {"size_bytes": 10, "label": "x" * 65},
        {"size_bytes": 10, "label": "a b"},
        {"size_bytes": 10, "label": "a/b"},
        {"size_bytes": 10, "label": "../x"},
        {"size_bytes": 10, "label": "zähler"},
        {"size_bytes": 10, "label": 7},
        [10, "ok"],
        "ok",
    ],
)
def test_invalid_export_requests_are_400(client: Client, body: object) -> None:
    resp = client.post("/api/exports", json=body)
    assert_error(resp, 400, SHAPE_CODES | {"invalid_name"})


@pytest.fixture(scope="module")
def short_lived_stack(tmp_path_factory: pytest.TempPathFactory):
    env = {"WEB_CONCURRENCY": "2", "EXPORT_MAX_AGE_SECONDS": str(MAX_AGE)}
    with own_stack_or_skip(tmp_path_factory, "short-lived-exports", env) as started:
        yield started


def test_an_expired_export_is_gone_at_once_and_its_bytes_soon_after(short_lived_stack) -> None:
    client = Client(short_lived_stack.base_url)
    meta = create(client, unique("expiring"), 1000)
    url = f"/api/exports/{meta['id']}"
    published = short_lived_stack.export_dir / "files" / meta["id"]
    assert published.is_dir(), published
    time.sleep(MAX_AGE + 0.5)
    # Past its age it is not found on either URL, sweep or not.
    assert_error(client.get(url), 404, "not_found")
    assert_error(client.get(f"{url}/download"), 404, "not_found")
    # Nothing else happens (no export is created), yet each worker's timer sweeps its
    # bytes away: every minute, or every max age where that is shorter.
    deadline = time.monotonic() + 2 * MAX_AGE + 10
    while published.exists():
        assert time.monotonic() < deadline, f"{published} outlived its age by {2 * MAX_AGE + 10} s"
        time.sleep(0.2)
