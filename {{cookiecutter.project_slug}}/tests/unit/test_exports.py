import hashlib
import os
import threading
import time

import pytest

from {{ cookiecutter.package_name }}.errors import ApiError
from {{ cookiecutter.package_name }}.exports import ExportStore


@pytest.fixture
def store(tmp_path):
    return ExportStore(tmp_path, "/_internal/exports/", max_age=3600)


def test_export_is_published_whole_and_the_work_area_is_emptied(store):
    meta = store.create("report", 3 * (1 << 20) + 7)
    data = store.data_path(meta).read_bytes()
    assert data.startswith(b"label=report\n")
    assert len(data) == meta["size"] == 3 * (1 << 20) + 7
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    assert store.get(meta["id"]) == meta
    assert list(store.work.iterdir()) == []


def test_concurrent_exports_never_share_a_path(store):
    metas = []

    def make(i):
        metas.append(store.create(f"label-{i}", 200_000 + i))

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


def test_a_failed_export_leaves_nothing(store, monkeypatch):
    def broken(path, header, size):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ExportStore, "_write", staticmethod(broken))
    with pytest.raises(OSError):
        store.create("x", 100)
    assert list(store.work.iterdir()) == []
    assert list(store.files.iterdir()) == []


def test_an_export_smaller_than_its_label_line_is_a_prefix_of_it(store):
    meta = store.create("longlabel", 5)
    assert store.data_path(meta).read_bytes() == b"label"
    assert meta["size"] == 5


@pytest.mark.parametrize("export_id", ["", "../etc", "A" * 32, "0" * 31, "0" * 33, "0" * 32])
def test_malformed_or_unknown_ids_are_not_found(store, export_id):
    with pytest.raises(ApiError) as caught:
        store.get(export_id)
    assert caught.value.status == 404


def test_the_accel_path_is_built_from_server_data(store):
    meta = store.create("x", 100)
    assert store.accel_path(meta) == f"/_internal/exports/{meta['id']}/export.txt"


def test_sweep_removes_old_exports_and_abandoned_work(store):
    meta = store.create("old", 100)
    abandoned = store.work / "export-crashed"
    abandoned.mkdir()
    past = time.time() - 7200
    os.utime(store.files / meta["id"], (past, past))
    os.utime(abandoned, (past, past))
    fresh = store.create("fresh", 100)
    store.sweep(time.time())
    assert not (store.files / meta["id"]).exists()
    assert not abandoned.exists()
    assert (store.files / fresh["id"]).exists()
