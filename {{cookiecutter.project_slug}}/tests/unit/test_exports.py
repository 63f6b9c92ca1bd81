import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.errors import NotFound
from {{ cookiecutter.package_name }}.exports import ACCEL_PREFIX, FILES_DIR, ExportStore

NGINX_APP_CONF = "deploy/nginx/app.conf.template"


@pytest.fixture
def store(tmp_path):
    return ExportStore(tmp_path, max_age=3600)


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


def test_sweep_removes_old_exports_and_abandoned_work(store):
    meta = create(store, "old", 100)
    abandoned = store.work / "export-crashed"
    abandoned.mkdir()
    past = time.time() - 7200
    os.utime(store.files / meta["id"], (past, past))
    os.utime(abandoned, (past, past))
    fresh = create(store, "fresh", 100)
    store.sweep(time.time())
    assert not (store.files / meta["id"]).exists()
    assert not abandoned.exists()
    assert (store.files / fresh["id"]).exists()
