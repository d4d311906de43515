from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from srserve.blobstore import (
    BlobNotFoundError,
    BlobStore,
    FilesystemBlobStore,
    InvalidBlobKeyError,
    make_blob_store,
    sweep_orphaned_jobs,
)
from srserve.config import CommonSettings


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


def test_put_get_exists_size_stream(store: FilesystemBlobStore) -> None:
    assert isinstance(store, BlobStore)
    store.put("jobs/abc/input/0", b"hello")
    assert store.get("jobs/abc/input/0") == b"hello"
    assert store.exists("jobs/abc/input/0")
    assert not store.exists("jobs/abc/input/1")
    assert store.size("jobs/abc/input/0") == 5
    assert b"".join(store.stream("jobs/abc/input/0", chunk_size=2)) == b"hello"
    store.put("jobs/abc/input/0", b"replaced")
    assert store.get("jobs/abc/input/0") == b"replaced"
    # no temp files left behind by the atomic write
    assert [p.name for p in (store.root / "jobs/abc/input").iterdir()] == ["0"]


def test_missing_blob_raises_not_found(store: FilesystemBlobStore) -> None:
    with pytest.raises(BlobNotFoundError):
        store.get("jobs/none/result.png")
    with pytest.raises(BlobNotFoundError):
        store.stream("jobs/none/result.png")
    with pytest.raises(BlobNotFoundError):
        store.size("jobs/none/result.png")


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "/abs/path", "jobs/../../x", "jobs//x", "", "jobs/x/", ".hidden", "jobs/a b", "jobs/é"],
)
def test_invalid_keys_are_refused(store: FilesystemBlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKeyError):
        store.put(key, b"x")


def test_delete_prefix(store: FilesystemBlobStore) -> None:
    for key in [
        "jobs/a/input/0",
        "jobs/a/reference",
        "jobs/a/result.png",
        "jobs/ab/input/0",
        "jobs/b/input/0",
    ]:
        store.put(key, b"x")
    assert store.delete_prefix("jobs/a/") == 3
    assert not store.exists("jobs/a/result.png")
    assert store.exists("jobs/ab/input/0") and store.exists("jobs/b/input/0")
    assert store.delete_prefix("jobs/b/input/0") == 1
    assert store.delete_prefix("jobs/nothing/") == 0
    with pytest.raises(InvalidBlobKeyError):
        store.delete_prefix("../")


def test_sweep_removes_only_old_orphans(store: FilesystemBlobStore) -> None:
    for job in ["alive", "expired", "fresh"]:
        store.put(f"jobs/{job}/input/0", b"x")
    old = time.time() - 7200
    for job in ["alive", "expired"]:
        os.utime(store.root / "jobs" / job, (old, old))
    removed = sweep_orphaned_jobs(store, lambda job_id: job_id == "alive", min_age_s=3600)
    assert removed == 1
    assert store.exists("jobs/alive/input/0")
    assert not store.exists("jobs/expired/input/0")
    assert store.exists("jobs/fresh/input/0")  # too young: its job may be being enqueued right now


def test_sweep_keeps_everything_when_the_job_check_fails(store: FilesystemBlobStore) -> None:
    store.put("jobs/x/input/0", b"x")

    def broken(job_id: str) -> bool:
        raise ConnectionError("redis down")

    assert sweep_orphaned_jobs(store, broken, min_age_s=0) == 0
    assert store.exists("jobs/x/input/0")


def test_make_blob_store_uses_settings(tmp_path: Path) -> None:
    store = make_blob_store(CommonSettings(blob_dir=tmp_path / "b"))
    store.put("k", b"1")
    assert (tmp_path / "b" / "k").read_bytes() == b"1"
