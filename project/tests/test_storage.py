"""The content-addressed store on a real filesystem: layout, atomic writes, the old layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imgproc.storage.service import ContentStore, sha256_hex


def test_blobs_live_under_one_level_of_fan_out(tmp_path: Path) -> None:
    store = ContentStore(tmp_path, fsync=True)
    digest, created = store.put(b"hello")
    assert created and digest == sha256_hex(b"hello")
    assert store.path_for(digest) == tmp_path / "objects" / digest[:2] / digest
    assert store.get(digest) == b"hello"
    assert store.put(b"hello") == (digest, False), "the same bytes are stored once"
    assert [p.name for p in store.path_for(digest).parent.iterdir()] == [digest], "no temp file"


def test_a_removed_fan_out_directory_is_made_again(tmp_path: Path) -> None:
    store = ContentStore(tmp_path, fsync=False)
    first, _ = store.put(b"a")
    store.delete(first)
    store.path_for(first).parent.rmdir()  # someone cleaned up behind the store's back
    assert store.put(b"a") == (first, True)
    assert store.get(first) == b"a"


def test_the_old_two_level_layout_is_migrated(
    tmp_path: Path, blob_count: Callable[[Path], int]
) -> None:
    store = ContentStore(tmp_path)
    blobs = [f"blob {i}".encode() for i in range(20)]
    for data in blobs:  # as the previous layout stored them: objects/ab/cd/<hash>
        digest = sha256_hex(data)
        old = tmp_path / "objects" / digest[:2] / digest[2:4] / digest
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_bytes(data)
    assert store.migrate_layout() == 20
    for data in blobs:
        assert store.get(sha256_hex(data)) == data
    assert not list((tmp_path / "objects").glob("??/??")), "the old directories are gone"
    assert store.migrate_layout() == 0, "running it again changes nothing"
    assert blob_count(tmp_path) == 20
