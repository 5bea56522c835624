"""The S3 backend's guarantees, against a real S3 server process (moto's `moto_server`, see
conftest.py): the same ones the file store gives (storage/backend.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imgproc.config import Settings
from imgproc.storage.backend import open_store
from imgproc.storage.s3 import S3Store, StorageUnavailable
from imgproc.storage.service import sha256_hex

S3Settings = Callable[..., Settings]


@pytest.fixture
def store(s3_settings: S3Settings) -> S3Store:
    s3 = open_store(s3_settings(Settings()), fsync=True)
    assert isinstance(s3, S3Store), "STORAGE_URL s3://... must choose the S3 backend"
    s3.prepare()  # what `python -m imgproc.migrate` does: the bucket is created
    return s3


def keys(store: S3Store) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_blobs_are_content_addressed_under_the_prefix(store: S3Store) -> None:
    data = b"some image bytes"
    digest, created = store.put(data)
    assert digest == sha256_hex(data) and created
    assert store.put(data) == (digest, False), "the same bytes are stored once"
    assert keys(store) == [f"run/blobs/objects/{digest[:2]}/{digest}"]
    assert store.has(digest) and store.get(digest) == data
    stream = store.open(digest)
    try:
        assert stream.size == len(data) and b"".join(stream.chunks) == data
    finally:
        stream.close()
    assert store.local_path(digest) is None, "an object store has no local file to send"
    assert store.describe().startswith(f"s3://{store.bucket}/run/blobs/")


def test_no_client_supplied_name_reaches_a_key(store: S3Store) -> None:
    for name in ("../../etc/passwd", "a.png", "ABCDEF" * 11, ""):
        with pytest.raises(ValueError, match="sha256"):
            store.key(name)
    assert keys(store) == []


def test_a_missing_object_is_file_not_found(store: S3Store) -> None:
    digest, _ = store.put(b"to be lost")
    store.delete(digest)
    store.delete(digest)  # deleting twice is fine
    assert not store.has(digest)
    with pytest.raises(FileNotFoundError):
        store.get(digest)
    with pytest.raises(FileNotFoundError):
        store.open(digest)


def test_a_large_blob_streams_in_chunks(store: S3Store) -> None:
    data = bytes(range(256)) * 8192  # 2 MB
    digest, _ = store.put(data)
    stream = store.open(digest)
    try:
        chunks = list(stream.chunks)
    finally:
        stream.close()
    assert len(chunks) > 1 and b"".join(chunks) == data


def test_readiness_probe_writes_and_removes_one_object(store: S3Store) -> None:
    store.check_writable(10**12)  # no "free space" on an object store: the size is ignored
    store.check_writable(1)
    assert keys(store) == [], "the probe object is deleted again"


def test_prepare_creates_the_bucket_once(s3_settings: S3Settings) -> None:
    s3 = open_store(s3_settings(Settings()), fsync=True)
    assert isinstance(s3, S3Store)
    with pytest.raises(StorageUnavailable):
        s3.put(b"x")  # no bucket yet: the store says it cannot serve (a 503, not a 500)
    assert s3.prepare() == 0
    assert s3.prepare() == 0, "idempotent"
    assert s3.put(b"x")[1]


def test_an_unreachable_store_is_an_os_error_soon(s3_settings: S3Settings) -> None:
    """Every failure of the store is an OSError (the API's 503, the worker's transient retry)."""
    down = s3_settings(Settings()).model_copy(update={"s3_endpoint_url": "http://127.0.0.1:1"})
    s3 = open_store(down, fsync=True)
    started = time.monotonic()
    for call in (lambda: s3.put(b"y"), lambda: s3.get("0" * 64), lambda: s3.has("0" * 64)):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert isinstance(caught.value, OSError) and "object store" in str(caught.value)
    with pytest.raises(OSError):
        s3.check_writable(1)
    assert time.monotonic() - started < 20, "a refused connection must not hang"


def test_file_urls_choose_the_file_store(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = open_store(Settings(storage_url=root.as_uri()), fsync=False)
    digest, created = store.put(b"abc")
    assert created and store.local_path(digest) == root / "objects" / digest[:2] / digest
    default = open_store(Settings(data_dir=root), fsync=False)
    assert default.has(digest), "without STORAGE_URL the file store in DATA_DIR is used"
    with pytest.raises(ValueError, match="STORAGE_URL"):
        Settings(storage_url="ftp://somewhere/x")
