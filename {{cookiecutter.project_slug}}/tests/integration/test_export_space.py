"""The export store under load: what a create costs, what it waits for, what the quota counts.

- With 30,000 exports on disk, no create lists the store (inotify sees the
  directory opened at most once, by the host's periodic rescan), and six
  creates sent at once all finish within the time one walk of the store
  takes: none counts the store, none waits for another's count.
- A worker writing a large export still answers: `/healthz` and other creates
  come back while the export is being written (under gevent the write and
  its hash run on the hub's thread pool; a file write never yields).
- The quota counts the exports' own bytes: after 20,000 entries came and went
  in the store's directory (which keeps the size they gave it), a 31 MB
  export fits a 32 MiB quota; a second one does not, until the first expires.
- A worker killed in the middle of an export gives its reservation back: the
  next export of that size is accepted once a sweep ran, not after an hour.

The listing, the quota and the killed writer are marked
same_for_every_worker_class: the ledger, the sweep and the writer's flock are
the toolkit's, whichever class calls them. Creates at once and the large
write are what a worker class changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from client import Client, assert_error, assert_json, describe, run_concurrently, unique
from stacks import own_stack_or_skip

MiB = 1 << 20

# -- creates at 30,000 exports ------------------------------------------------

# Exports put on disk beside the stack's own: a store that has served a while.
SEEDED = 30_000
# Creates sent at once, and creates watched one after another.
PARALLEL = 6
WATCHED = 20
SMALL = 4096
# One rescan of the host may fall inside a test (they run every ten minutes,
# one process of the host at a time); a create that counts the store lists it
# every time.
RESCANS_IN_A_TEST = 1


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Three workers whose store holds SEEDED exports besides the ones tests make."""
    with own_stack_or_skip(tmp_path_factory, "crowded-exports", {"WEB_CONCURRENCY": "3"}) as stack:
        seeded = seed_exports(stack.export_dir / "files", SEEDED)
        try:
            yield stack
        finally:
            for path in seeded:
                shutil.rmtree(path, ignore_errors=True)


def seed_exports(files: Path, count: int) -> list[Path]:
    """`count` small published exports, laid out as the store lays them out."""
    now = time.time()
    made = []
    for _ in range(count):
        export_id = os.urandom(16).hex()
        path = files / export_id
        path.mkdir(mode=0o750)
        made.append(path)
        body = b"label=seeded\n"
        meta = {"id": export_id, "label": "seeded", "size": len(body), "created": now}
        (path / "data").write_bytes(body)
        (path / "meta.json").write_text(json.dumps(meta))
    return made


def create(client: Client, size: int, timeout: float = 60.0) -> dict:
    label = unique("space")
    resp = client.post("/api/exports", json={"size_bytes": size, "label": label}, timeout=timeout)
    meta = assert_json(resp, 201)
    assert meta["size"] == size, meta
    return meta


def walk(files: Path) -> int:
    """Count the store the way a create that counts it must: every export's entries."""
    total = 0
    with os.scandir(files) as exports:
        for export in exports:
            with os.scandir(export.path) as entries:
                total += sum(entry.stat(follow_symlinks=False).st_blocks for entry in entries)
    return total


# inotify's event header (struct inotify_event, then `len` bytes of name) and bits.
_EVENT = struct.Struct("iIII")
IN_OPEN = 0x00000020
IN_Q_OVERFLOW = 0x00004000
# Events the kernel queues before it drops them (fs.inotify.max_queued_events).
QUEUE_LENGTH = 16384


class Listings:
    """How many times a directory was opened itself (a listing opens it), by anyone.

    A few ctypes lines rather than inotify_simple: the suite's dependencies are
    locked with their hashes, and this is all one test needs of inotify.
    """

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0 or libc.inotify_add_watch(self._fd, os.fsencode(directory), IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {directory}")

    def count(self) -> int:
        """Listings since the last call; a queue that overflowed counts as full."""
        listings = 0
        while True:
            try:
                events = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return listings
            offset = 0
            while offset < len(events):
                _, mask, _, name_length = _EVENT.unpack_from(events, offset)
                offset += _EVENT.size + name_length
                if mask & IN_Q_OVERFLOW:
                    listings += QUEUE_LENGTH
                elif mask & IN_OPEN and name_length == 0:  # the directory, not an entry
                    listings += 1

    def close(self) -> None:
        os.close(self._fd)


@pytest.mark.same_for_every_worker_class
def test_no_create_lists_the_store(crowded) -> None:
    client = Client(crowded.base_url)
    listings = Listings(crowded.export_dir / "files")
    try:
        listings.count()
        for _ in range(WATCHED):
            meta = create(client, SMALL)
            assert_json(client.get(f"/api/exports/{meta['id']}"), 200)
        listed = listings.count()
    finally:
        listings.close()
    assert listed <= RESCANS_IN_A_TEST, (
        f"{WATCHED} creates listed a store of {SEEDED} exports {listed} times"
    )


def test_creates_sent_at_once_finish_within_one_walk_of_the_store(crowded) -> None:
    """A create that counted the store would take a walk of it at least, each in turn
    under the lock: six would take six walks. Here all six take less than one."""
    client = Client(crowded.base_url)
    files = crowded.export_dir / "files"
    create(client, SMALL)  # every worker's ledger connection is open before the clock runs
    started = time.monotonic()
    walk(files)
    one_walk = time.monotonic() - started
    started = time.monotonic()
    metas = run_concurrently([lambda: create(client, SMALL)] * PARALLEL, threads=PARALLEL)
    together = time.monotonic() - started
    summary = (
        f"{PARALLEL} creates at once took {together:.2f} s; "
        f"one walk of the {SEEDED + 1} exports took {one_walk:.2f} s"
    )
    print(summary)
    assert len({meta["id"] for meta in metas}) == PARALLEL
    assert together < one_walk, summary


# -- a worker writing a large export -------------------------------------------

LARGE = 512 * MiB
# Seconds for a call that writes LARGE bytes on a loaded machine.
SLOW_CALL = 120.0


# Stacks whose workers `alone` stops: nginx keeps no idle connection to gunicorn (its
# keepalive is then too short for nginx to close them first), so no request is sent
# down a connection a stopped worker had accepted. A stopped worker sends the arbiter
# no heartbeat: its timeout outlasts the slowest call, or the arbiter kills it
# mid-test (a large export took longer than gthread's 30 s on a loaded machine).
ALONE_ENV = {
    "WEB_CONCURRENCY": "2",
    "GUNICORN_KEEPALIVE": "5",
    "GUNICORN_TIMEOUT": str(int(2 * SLOW_CALL)),
}


@pytest.fixture(scope="module")
def writer_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with own_stack_or_skip(tmp_path_factory, "large-writer", ALONE_ENV) as stack:
        yield stack


@contextlib.contextmanager
def alone(stack) -> Iterator[int]:
    """One worker serves everything meanwhile: gunicorn never runs fewer than two, so
    the others are stopped (SIGSTOP) and whatever answers is this one. Yields its pid."""
    chosen, *others = sorted(stack.ready_workers())
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield chosen
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def in_background(call: Callable[[], object]) -> tuple[threading.Thread, list]:
    """Run `call` on a thread of its own; its result (or exception) lands in the list."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # reported by the test that reads the outcome
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(
    found: Callable[[], object], what: str, seconds: float = 60.0, every: float = 0.001
) -> object:
    deadline = time.monotonic() + seconds
    while not (result := found()):
        assert time.monotonic() < deadline, f"no {what} within {seconds:g} s"
        time.sleep(every)
    return result


def first_entry(directory: Path) -> Path | None:
    return next(iter(directory.iterdir()), None)


def test_a_worker_writing_a_large_export_still_answers(writer_stack) -> None:
    if writer_stack.gunicorn_settings.worker_class == "sync":
        pytest.skip("a sync worker serves one request at a time by design; its peers answer")
    client = Client(writer_stack.base_url)
    work = writer_stack.export_dir / "work"
    answered_meanwhile = 0
    with alone(writer_stack):
        big, outcome = in_background(lambda: create(client, LARGE, timeout=SLOW_CALL))
        # Nothing else is in flight: the first directory in the working area is the large one's.
        writing = wait_for(lambda: first_entry(work), "working directory for the large export")
        while big.is_alive():
            health = client.get("/healthz", timeout=SLOW_CALL)
            small = create(client, SMALL, timeout=SLOW_CALL)
            assert health.status_code == 200, describe(health)
            if not writing.exists():
                break  # the large export was published before these came back
            answered_meanwhile += 1
        big.join(timeout=SLOW_CALL)
    assert not isinstance(outcome[0], Exception), outcome
    assert outcome[0]["size"] == LARGE
    shutil.rmtree(writer_stack.export_dir / "files" / outcome[0]["id"])  # half a GiB less on disk
    assert answered_meanwhile > 0, (
        "no /healthz and no other create came back while the large export was written"
    )
    assert small["size"] == SMALL


@pytest.mark.same_for_every_worker_class
def test_a_killed_writers_reservation_comes_back(tmp_path_factory) -> None:
    """Killed after its reservation, mid-write: the next export of that size is taken
    once the new worker's first sweep ran (the dead writer's lock went with it)."""
    env = {**ALONE_ENV, "EXPORT_QUOTA_BYTES": str(LARGE + LARGE // 2)}
    with own_stack_or_skip(tmp_path_factory, "killed-writer", env) as stack:
        client = Client(stack.base_url)
        work = stack.export_dir / "work"
        with alone(stack) as writer:
            big, _ = in_background(
                lambda: client.post(
                    "/api/exports",
                    json={"size_bytes": LARGE, "label": unique("killed")},
                    timeout=SLOW_CALL,
                )
            )
            # Its data file is allocated once its space is reserved.
            wait_for(
                lambda: any((entry / "data").exists() for entry in work.iterdir()),
                "allocated data file in the working area",
            )
            os.kill(writer, signal.SIGKILL)
            big.join(timeout=SLOW_CALL)
        assert list((stack.export_dir / "files").iterdir()) == [], "killed too late"
        deadline = time.monotonic() + 60
        while True:
            resp = client.post(
                "/api/exports",
                json={"size_bytes": LARGE, "label": unique("after")},
                timeout=SLOW_CALL,
            )
            if resp.status_code != 507:
                break
            assert time.monotonic() < deadline, "the dead writer's space never came back"
            time.sleep(0.5)
        meta = assert_json(resp, 201)
        assert list(work.iterdir()) == [], "the dead writer's directory is still there"
        shutil.rmtree(stack.export_dir / "files" / meta["id"])


# -- what the quota counts ----------------------------------------------------

QUOTA = 32 * MiB
NEARLY_QUOTA = 31_000_000
# Entries with the longest names a filesystem takes: few make a directory large.
CHURNED = 20_000
LONG_NAME = 200
# EXPORT_MAX_AGE_SECONDS of the quota stack: the test waits it out once.
MAX_AGE = 6


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    env = {
        "WEB_CONCURRENCY": "2",
        "EXPORT_QUOTA_BYTES": str(QUOTA),
        "EXPORT_MAX_AGE_SECONDS": str(MAX_AGE),
    }
    with own_stack_or_skip(tmp_path_factory, "quota-32mib", env) as stack:
        yield stack


def churn(directory: Path, count: int) -> int:
    """Make `count` entries in `directory` and remove them again; its size after."""
    names = [directory / str(i).zfill(LONG_NAME) for i in range(count)]
    try:
        for path in names:
            path.touch()
    finally:
        for path in names:
            path.unlink(missing_ok=True)
    return os.lstat(directory).st_blocks * 512


@pytest.mark.same_for_every_worker_class
def test_the_quota_counts_exports_not_the_directory_that_held_many(quota_stack) -> None:
    client = Client(quota_stack.base_url)
    files = quota_stack.export_dir / "files"
    directory_size = churn(files, CHURNED)
    if directory_size < QUOTA - NEARLY_QUOTA:
        pytest.skip(f"this filesystem shrank the emptied directory ({directory_size} bytes)")
    first = create(client, NEARLY_QUOTA)
    second = client.post(
        "/api/exports", json={"size_bytes": NEARLY_QUOTA, "label": unique("second")}
    )
    assert_error(second, 507, "insufficient_storage")
    # Expired, the first gives its space back.
    wait_for(
        lambda: client.get(f"/api/exports/{first['id']}").status_code == 404,
        "expiry of the first export",
        seconds=MAX_AGE + 30,
        every=0.2,
    )
    third = create(client, NEARLY_QUOTA)
    assert sorted(path.name for path in files.iterdir()) == [third["id"]]
    assert list((quota_stack.export_dir / "work").iterdir()) == []
