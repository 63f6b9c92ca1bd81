import errno
import hashlib
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import config, runtime
from {{ cookiecutter.package_name }}.errors import InsufficientStorage, NotFound
from {{ cookiecutter.package_name }}.exports import (
    ACCEL_PREFIX,
    FILES_DIR,
    LEDGER_DIR,
    STALE_WORK_SECONDS,
    ExportStore,
)

NGINX_APP_CONF = "deploy/nginx/app.conf.template"
MiB = 1 << 20
# Room on any disk these tests meet: the store's own limits are what refuses.
UNLIMITED = 1 << 50


def make_store(root: Path, *, disk_reserve: int = 0, quota: int = UNLIMITED) -> ExportStore:
    return ExportStore(root, max_age=3600, disk_reserve=disk_reserve, quota=quota)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path)


def create(store, label: str, size: int) -> dict:
    content = (f"label={label}\n".encode() + b"x" * size)[:size]
    return store.create([content], size=size, filename=f"{label}.txt", label=label)


def test_export_is_published_whole_and_the_work_area_is_emptied(store):
    meta = create(store, "report", 3 * (1 << 20) + 7)
    data = store.data_path(meta).read_bytes()
    assert data.startswith(b"label=report\n")
    assert len(data) == meta["size"] == 3 * (1 << 20) + 7
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    assert store.get(meta["id"]) == meta
    assert list(store.work.iterdir()) == []


def test_concurrent_exports_never_share_a_path(store):
    metas = []

    def make(i):
        metas.append(create(store, f"label-{i}", 200_000 + i))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({m["id"] for m in metas}) == 16
    for meta in metas:
        data = store.data_path(meta).read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"]
        assert data.startswith(f"label={meta['label']}\n".encode())
    assert list(store.work.iterdir()) == []


def test_a_failed_export_leaves_nothing(store):
    def broken():
        yield b"partial"
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.create(broken(), size=100, filename="x.txt")
    assert list(store.work.iterdir()) == []
    assert list(store.files.iterdir()) == []


@pytest.mark.parametrize("export_id", ["", "../etc", "A" * 32, "0" * 31, "0" * 33, "0" * 32])
def test_malformed_or_unknown_ids_are_not_found(store, export_id):
    with pytest.raises(NotFound):
        store.get(export_id)


def test_the_accel_path_is_built_from_server_data(store):
    meta = create(store, "x", 100)
    assert store.accel_path(meta) == f"{ACCEL_PREFIX}{meta['id']}/data"


def test_nginx_serves_the_accel_prefix_from_the_files_directory():
    """One fact, two readers: the app's prefix is nginx's internal location."""
    conf = Path(NGINX_APP_CONF).read_text(encoding="utf-8")
    start = conf.index("location ^~ " + ACCEL_PREFIX + " ")
    block = conf[start : conf.index("\n    }", start)]
    assert "internal;" in block
    assert 'alias "$' + "{EXPORT_DIR}/" + FILES_DIR + '/";' in block


def test_sweep_removes_expired_exports_only(store):
    old = create(store, "old", 100)
    time.sleep(0.01)  # the two are created apart, so one moment lies between them
    fresh = create(store, "fresh", 100)
    between = (old["created"] + fresh["created"]) / 2
    store.sweep(between + store.max_age)
    assert not (store.files / old["id"]).exists()
    assert (store.files / fresh["id"]).exists()
    assert store.ledger.used() == charged(store)


def test_rescan_matches_the_ledger_to_the_disk(tmp_path):
    """Exports older than the ledger are counted, those removed by hand no longer
    are, and work no export names is removed once stale."""
    before = make_store(tmp_path)
    kept, removed = create(before, "kept", 5000), create(before, "removed", 7000)
    shutil.rmtree(tmp_path / LEDGER_DIR)  # as before the ledger existed
    shutil.rmtree(before.files / removed["id"])
    abandoned, recent = before.work / "export-crashed", before.work / "export-running"
    abandoned.mkdir()
    recent.mkdir()
    past = time.time() - STALE_WORK_SECONDS - 60
    os.utime(abandoned, (past, past))
    store = make_store(tmp_path)
    store.sweep(time.time())
    assert store.ledger.used() == 0  # a new ledger: the rescan is what finds them
    store.rescan(time.time())
    assert store.ledger.used() == charged(store) > 5000
    assert sorted(p.name for p in store.work.iterdir()) == ["export-running"]
    # A row whose files are gone goes; the rest of the ledger stays.
    shutil.rmtree(store.files / kept["id"])
    store.rescan(time.time())
    assert store.ledger.used() == 0
    assert store.ledger.entries() == {}


def charged(store: ExportStore) -> int:
    """What the store's exports are charged against the quota: each one's data and its
    meta.json in whole 4 KiB blocks, the directories that hold them not at all."""
    sizes = [os.lstat(export / "data").st_size for export in store.files.iterdir()]
    return sum(-(-size // 4096) * 4096 + 4096 for size in sizes)


def held_on_disk(store: ExportStore) -> int:
    """What the store's files and directories take on disk: within the quota too, with
    few exports (the quota itself counts only the exports' files)."""
    total = 0
    for top in (store.files, store.work):
        total += os.lstat(top).st_blocks * 512
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [*dirnames, *filenames]:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_disk_that_fills_mid_export_is_insufficient_storage(store, code):
    """ENOSPC or EDQUOT while writing is 507 (InsufficientStorage), not a 500."""

    def filling():
        yield b"label=x\n"
        raise OSError(code, os.strerror(code))

    with pytest.raises(InsufficientStorage):
        store.create(filling(), size=10 * MiB, filename="x.txt")
    assert list(store.work.iterdir()) == []
    assert list(store.files.iterdir()) == []


def test_an_export_past_the_disk_reserve_is_refused_before_a_byte_is_written(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    # 16 GiB more than is free: no other process on this machine frees that much meanwhile.
    store = make_store(tmp_path, disk_reserve=free + (16 << 30))
    written = []

    def content():
        written.append(1)
        yield b"x"

    with pytest.raises(InsufficientStorage):
        store.create(content(), size=1, filename="x.txt")
    assert written == []
    assert list(store.work.iterdir()) == []
    assert list(store.files.iterdir()) == []


def test_an_export_past_the_quota_is_refused_and_leaves_nothing(tmp_path):
    store = make_store(tmp_path, quota=4 * MiB)
    first = create(store, "first", 3 * MiB)
    with pytest.raises(InsufficientStorage):
        create(store, "second", 2 * MiB)
    assert [p.name for p in store.files.iterdir()] == [first["id"]]
    assert list(store.work.iterdir()) == []
    assert held_on_disk(store) <= 4 * MiB
    create(store, "small", 1000)  # what the quota leaves is still usable


def test_expired_exports_give_their_space_back_to_the_quota(tmp_path):
    store = ExportStore(tmp_path, max_age=0.2, disk_reserve=0, quota=4 * MiB)
    old = create(store, "old", 3 * MiB)
    time.sleep(0.3)  # its age passes; no sweep has run since
    assert (store.files / old["id"]).exists()
    new = create(store, "new", 3 * MiB)
    assert [p.name for p in store.files.iterdir()] == [new["id"]]
    assert store.ledger.used() == charged(store)


def test_the_quota_counts_exports_not_the_directories_that_held_many(tmp_path):
    """A directory keeps the size its most entries gave it (ext4): after thousands of
    exports are gone, an export the size of the quota less its metadata still fits."""
    quota = 8 * MiB
    store = make_store(tmp_path, quota=quota)
    store._ensure_dirs()
    for parent in (store.files, store.work):
        names = [parent / f"{i:032x}" for i in range(20_000)]
        for path in names:
            path.mkdir()
        for path in names:
            path.rmdir()
    grown = sum(os.lstat(p).st_blocks * 512 for p in (store.files, store.work))
    if grown < 64 * 1024:
        pytest.skip(f"this filesystem shrinks directories after deletes ({grown} bytes)")
    meta = create(store, "whole", quota - 4096)
    assert store.ledger.used() == quota
    with pytest.raises(InsufficientStorage):
        create(store, "more", 1)
    assert [p.name for p in store.files.iterdir()] == [meta["id"]]


def test_a_dead_writers_reservation_is_given_back_and_a_living_ones_kept(tmp_path):
    """The writer's flock goes with its process: the sweep frees what a killed worker
    reserved, and leaves alone what a living one is writing."""
    store = make_store(tmp_path, quota=8 * MiB)
    ctx = multiprocessing.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_stuck_writer, args=(str(tmp_path), 6 * MiB, started, release))
    child.start()
    try:
        assert started.wait(timeout=60), "the writer never started"
        store.sweep(time.time())
        assert store.ledger.used() >= 6 * MiB  # alive: its reservation holds
        with pytest.raises(InsufficientStorage):
            create(store, "meanwhile", 4 * MiB)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=60)
    assert [p.name for p in store.work.iterdir()] != []  # what the killed writer left
    store.sweep(time.time())
    assert store.ledger.used() == 0
    assert list(store.work.iterdir()) == []
    create(store, "after", 6 * MiB)


def _stuck_writer(root: str, size: int, started, release) -> None:
    """A worker that reserves and starts writing, then waits (to be killed)."""

    def content():
        yield b"label=stuck\n"
        started.set()
        release.wait(timeout=120)
        yield b"x"

    make_store(Path(root), quota=8 * MiB).create(content(), size=size, filename="x.txt")


def test_an_export_published_by_a_writer_that_died_before_settling_is_kept(tmp_path):
    """Published, then the writer died before the ledger heard: the sweep settles the
    charge from the files, and the export expires like any other."""
    store = make_store(tmp_path)
    settle = store.ledger.settle

    def dies(*args):
        raise KeyboardInterrupt  # the process ends here

    store.ledger.settle = dies
    with pytest.raises(KeyboardInterrupt):
        create(store, "orphan", 10_000)
    (published,) = store.files.iterdir()
    assert store.ledger.entries() == {published.name: None}
    store.ledger.settle = settle
    store.sweep(time.time())
    meta = store.get(published.name)
    assert store.ledger.entries() == {published.name: meta["created"]}
    assert store.ledger.used() == charged(store)
    store.sweep(meta["created"] + store.max_age + 1)
    assert store.ledger.used() == 0
    assert list(store.files.iterdir()) == []


def _create_in_child(root: str, quota: int, size: int, start, results) -> None:
    """One worker process: its own store on the shared root, all starting together."""
    store = make_store(Path(root), quota=quota)
    start.wait(timeout=60)
    try:
        create(store, f"p{os.getpid()}", size)
        results.put("created")
    except InsufficientStorage:
        results.put("refused")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def store_holding_many_exports(root: Path, quota: int) -> ExportStore:
    """A store already holding 300 small exports, as in service."""
    store = make_store(root, quota=quota)
    for i in range(300):
        create(store, f"old{i}", 10)
    return store


def test_concurrent_processes_never_take_the_store_past_its_quota(tmp_path):
    """Twelve processes race for room for a few: the lock makes the sum exact."""
    size, racers = 2 * MiB, 12
    store = store_holding_many_exports(tmp_path, UNLIMITED)
    quota = charged(store) + 10 * MiB
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(racers), ctx.Queue()
    children = [
        ctx.Process(target=_create_in_child, args=(str(tmp_path), quota, size, start, results))
        for _ in range(racers)
    ]
    for child in children:
        child.start()
    outcomes = sorted(results.get(timeout=120) for _ in children)
    for child in children:
        child.join(timeout=60)
    assert set(outcomes) <= {"created", "refused"}, outcomes
    assert store.ledger.used() == charged(store) <= quota, outcomes
    # 24 MiB asked, 10 MiB free under the quota: at most four fit beside the metadata.
    assert 1 <= outcomes.count("created") <= 4, outcomes
    assert list(store.work.iterdir()) == []


def test_concurrent_threads_never_take_the_store_past_its_quota(tmp_path):
    """gthread's threads share one process: the same store object, the same bound."""
    size = 2 * MiB
    store = store_holding_many_exports(tmp_path, UNLIMITED)
    store.quota = quota = charged(store) + 10 * MiB
    outcomes = []

    def make(i):
        try:
            create(store, f"t{i}", size)
            outcomes.append("created")
        except InsufficientStorage:
            outcomes.append("refused")

    threads = [threading.Thread(target=make, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 12, outcomes  # a thread that raised anything else is missing
    assert 1 <= outcomes.count("created") <= 4, outcomes
    assert store.ledger.used() == charged(store) <= quota
    assert list(store.work.iterdir()) == []


def test_chunks_short_of_the_size_give_the_rest_back(store):
    meta = store.create([b"label=x\n", b"abc"], size=MiB, filename="x.txt")
    assert meta["size"] == 11
    assert store.data_path(meta).read_bytes() == b"label=x\nabc"
    assert os.stat(store.data_path(meta)).st_blocks * 512 < MiB


def test_chunks_past_the_size_are_refused_and_leave_nothing(store):
    with pytest.raises(ValueError, match="more than"):
        store.create([b"x" * 100, b"y"], size=100, filename="x.txt")
    assert list(store.work.iterdir()) == []
    assert list(store.files.iterdir()) == []


def test_the_published_tree_has_no_permission_for_others(tmp_path):
    """Only the service's user and the web server's group may read or list exports."""
    root = tmp_path / "exports"
    # As the stack and older versions left them: listable by anyone.
    (root / "files").mkdir(parents=True, mode=0o755)
    (root / "work").mkdir(mode=0o755)
    old_umask = os.umask(0)  # the worst a process can inherit: nothing masked
    try:
        store = make_store(root)
        metas = [create(store, f"perm{i}", 5000) for i in range(2)]
    finally:
        os.umask(old_umask)
    entries = [store.files, store.work, root / LEDGER_DIR]
    for meta in metas:
        entries += [store.files / meta["id"], *(store.files / meta["id"]).iterdir()]
    modes = {str(p.relative_to(root)): stat.S_IMODE(os.lstat(p).st_mode) for p in entries}
    assert all(mode & 0o007 == 0 for mode in modes.values()), {k: oct(m) for k, m in modes.items()}
    assert modes["files"] == 0o750 and modes["work"] == modes[LEDGER_DIR] == 0o700
    for meta in metas:
        assert modes[f"files/{meta['id']}"] == 0o750
        assert modes[f"files/{meta['id']}/data"] == modes[f"files/{meta['id']}/meta.json"] == 0o640


def test_the_runtime_gives_the_store_its_reserve_and_quota_from_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("EXPORT_DISK_RESERVE_BYTES", "12345")
    monkeypatch.setenv("EXPORT_QUOTA_BYTES", "67890")
    exports = runtime.open_runtime(config.load()).exports
    assert (exports.disk_reserve, exports.quota) == (12345, 67890)


# -- on a real full disk: a tmpfs of its own (mounting one needs root) ----------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 16 MiB tmpfs; skipped unless root, but CI (root) must run it."""
    ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    mounted = None
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={16 * MiB}", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
    if mounted is None or mounted.returncode != 0:
        reason = "mounting a tmpfs needs root (CI runs as root)"
        if mounted is not None:
            reason = f"cannot mount a tmpfs: {mounted.stderr.strip()}"
        if ci:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


class NoPrecheckStore(ExportStore):
    """Believes the disk is empty, so only the kernel can say no (as when a racer took
    the space between this store's look at the disk and its allocation)."""

    def _free(self) -> int:
        return UNLIMITED


def test_the_kernels_enospc_on_allocation_is_insufficient_storage(small_tmpfs):
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (12 * MiB))
    store = NoPrecheckStore(small_tmpfs, max_age=3600, disk_reserve=0, quota=UNLIMITED)
    with pytest.raises(InsufficientStorage) as refused:
        create(store, "big", 6 * MiB)
    assert isinstance(refused.value.__cause__, OSError)
    assert refused.value.__cause__.errno == errno.ENOSPC
    assert list(store.work.iterdir()) == []
    assert list(store.files.iterdir()) == []
    filler.unlink()
    create(store, "fits", 6 * MiB)  # the refusal took nothing with it


def test_racing_exports_on_a_small_disk_get_their_room_or_a_refusal(small_tmpfs):
    """Six 6 MiB exports for 16 MiB less a 1 MiB reserve: room for two, no more."""
    reserve, size = MiB, 6 * MiB
    outcomes = []

    def make(i):
        store = make_store(small_tmpfs, disk_reserve=reserve)  # one per "process"
        try:
            meta = create(store, f"r{i}", size)
            data = store.data_path(meta).read_bytes()
            assert hashlib.sha256(data).hexdigest() == meta["sha256"]
            outcomes.append("created")
        except InsufficientStorage:
            outcomes.append("refused")

    threads = [threading.Thread(target=make, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 6, outcomes  # a thread that raised anything else is missing
    assert outcomes.count("created") == 2, outcomes
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    assert free >= reserve
    assert list((small_tmpfs / "work").iterdir()) == []
