"""A full disk or a full export store is 507 through nginx, never 500, and leaves nothing behind.

Six 30 MiB exports race over three workers for a 100 MiB tmpfs: each gets its
space (201, and downloads whole) or is refused (507), the working area ends
empty, and the service goes on answering. The store's total quota holds the
same way on an ordinary disk. Both stacks are this module's own; the first
has its export directory on a tmpfs, mounted before the stack starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from client import Client, assert_error, assert_json, describe, run_concurrently, unique
from stacks import EXTERNAL_BASE_URL, NEEDS_OWN_STACK, own_stack_or_skip

MiB = 1 << 20
TMPFS_SIZE = 100 * MiB
EXPORT_SIZE = 30 * MiB
RACERS = 6
# Small enough that three 30 MiB exports fit the tmpfs, so some are accepted.
DISK_RESERVE = 8 * MiB
QUOTA = 8 * MiB
QUOTA_EXPORT_SIZE = 3 * MiB // 2
# Seconds per HTTP call: 30 MiB written, hashed and fsynced on a loaded machine.
SLOW_CALL = 120.0
NEEDS_ROOT = "mounting a tmpfs needs root (CI runs as root)"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[None]:
    """A tmpfs of `size` bytes at `path`, unmounted at the end; root only (CI must have it)."""
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail(f"{NEEDS_ROOT}, and CI must run this test")
        pytest.skip(NEEDS_ROOT)
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs at {path}: {mounted.stderr.strip()}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            # Something still holds a file there: detach now, freed when it lets go.
            subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture(scope="module")
def tmpfs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Three workers whose export store is a 100 MiB tmpfs."""
    from stack import Stack

    if EXTERNAL_BASE_URL:
        pytest.skip(NEEDS_OWN_STACK)
    env = {"WEB_CONCURRENCY": "3", "EXPORT_DISK_RESERVE_BYTES": str(DISK_RESERVE)}
    stack = Stack(tmp_path_factory.mktemp("disk-full"), env=env)
    # The stack keeps its exports in run_dir/exports (gunicorn's EXPORT_DIR and nginx's
    # alias): the tmpfs goes exactly there before the stack starts, so both use it.
    with tmpfs(stack.export_dir, TMPFS_SIZE):
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Three workers sharing an export store of at most 8 MiB, on the ordinary disk."""
    env = {"WEB_CONCURRENCY": "3", "EXPORT_QUOTA_BYTES": str(QUOTA)}
    with own_stack_or_skip(tmp_path_factory, "quota", env) as started:
        yield started


def allocated(root: Path) -> int:
    """Bytes the store's files and directories take on disk (files/ and work/)."""
    total = 0
    for top in (root / "files", root / "work"):
        total += os.lstat(top).st_blocks * 512
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [*dirnames, *filenames]:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def race(client: Client, size: int, racers: int) -> list:
    """`racers` exports of `size` bytes sent at once; 201 or 507 each, never anything else."""
    calls = [
        lambda i=i: client.post(
            "/api/exports",
            json={"size_bytes": size, "label": unique(f"race{i}")},
            timeout=SLOW_CALL,
        )
        for i in range(racers)
    ]
    answers = run_concurrently(calls, threads=racers)
    for resp in answers:
        assert resp.status_code in {201, 507}, describe(resp)
        if resp.status_code == 507:
            assert_error(resp, 507, "insufficient_storage")
    return answers


def download_whole(client: Client, meta: dict) -> None:
    resp = client.get(meta["download_url"], timeout=SLOW_CALL)
    assert resp.status_code == 200, describe(resp)
    assert len(resp.content) == meta["size"], (len(resp.content), meta)
    assert hashlib.sha256(resp.content).hexdigest() == meta["sha256"], meta


def work_leftovers(stack) -> list[str]:
    return sorted(str(p) for p in (stack.export_dir / "work").rglob("*"))


def test_exports_racing_for_a_full_disk_get_201_or_507(tmpfs_stack) -> None:
    client = Client(tmpfs_stack.base_url)
    answers = race(client, EXPORT_SIZE, RACERS)
    created = [assert_json(resp, 201) for resp in answers if resp.status_code == 201]
    statuses = sorted(resp.status_code for resp in answers)
    # 180 MiB asked of 100 MiB: some must be refused, and the first one fits.
    assert 201 in statuses and 507 in statuses, statuses
    # What was accepted fits beside the reserve: no export was promised space it lacks.
    assert len(created) * EXPORT_SIZE <= TMPFS_SIZE - DISK_RESERVE, statuses
    for meta in created:
        download_whole(client, meta)
    assert work_leftovers(tmpfs_stack) == []
    # Still serving, exports included, while the disk stays nearly full.
    assert assert_json(client.get("/healthz"), 200)["status"] == "ok"
    small = assert_json(
        client.post("/api/exports", json={"size_bytes": 4096, "label": unique("after")}), 201
    )
    download_whole(client, small)
    # One more 30 MiB export: refused if the race left no room for it (racers may all
    # have been refused together, never admitted together), whole if it did.
    room = TMPFS_SIZE - DISK_RESERVE - len(created) * EXPORT_SIZE - MiB  # MiB: metadata
    last = client.post(
        "/api/exports", json={"size_bytes": EXPORT_SIZE, "label": unique("last")}, timeout=SLOW_CALL
    )
    if room >= EXPORT_SIZE:
        download_whole(client, assert_json(last, 201))
    else:
        assert_error(last, 507, "insufficient_storage")
    assert work_leftovers(tmpfs_stack) == []


def test_the_store_quota_holds_across_workers(quota_stack) -> None:
    client = Client(quota_stack.base_url)
    answers = race(client, QUOTA_EXPORT_SIZE, 8)
    created = [assert_json(resp, 201) for resp in answers if resp.status_code == 201]
    statuses = sorted(resp.status_code for resp in answers)
    # 12 MiB asked of an 8 MiB store: some refused, some accepted.
    assert 201 in statuses and 507 in statuses, statuses
    used = allocated(quota_stack.export_dir)
    assert used <= QUOTA, f"the store holds {used} bytes, past its quota of {QUOTA}"
    published = sorted(p.name for p in (quota_stack.export_dir / "files").iterdir())
    assert published == sorted(meta["id"] for meta in created)
    assert work_leftovers(quota_stack) == []
    for meta in created:
        download_whole(client, meta)
    # nginx read them, yet nobody but the service's user and group can read or list them.
    root = quota_stack.export_dir
    tree = [root / "files", root / "work", *(root / "files").rglob("*")]
    modes = {str(path): path.lstat().st_mode & 0o777 for path in tree}
    assert {path: oct(mode) for path, mode in modes.items() if mode & 0o007} == {}
    # The quota is the store's, not the disk's: a small export still fits beside it.
    meta = assert_json(client.post("/api/exports", json={"size_bytes": 100, "label": "x"}), 201)
    download_whole(client, meta)
