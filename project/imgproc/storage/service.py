"""The file store (see backend.py): blobs by sha256 under `<data_dir>/objects/ab/<hash>`.

A path is built only from a hash this module computed or validated, never from a client's file
name. Writes go to a temporary file in the same directory and are renamed into place, so a
reader sees a whole file or none; the same bytes are stored once.

One level of 256 directories: with two levels (`ab/cd/`, 65,536 directories) nearly every write
of a young store created a directory or two, a measurable share of a small job's time. A
process remembers the directories it has seen, so a write makes no mkdir call at all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgproc.storage.backend import BlobStream

HEX64 = re.compile(r"[0-9a-f]{64}")
# A new temporary file: never an existing one (nor through a symlink), closed in children.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Blobs addressed by sha256, written atomically."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root) / "objects"
        self.fsync = fsync
        self._dirs: set[Path] = set()  # fan-out directories known to exist

    def path_for(self, digest: str) -> Path:
        if not HEX64.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes, digest: str | None = None) -> tuple[str, bool]:
        """Store `data`; return (its sha256, whether a new file was written)."""
        digest = digest or sha256_hex(data)
        path = self.path_for(digest)
        if path.exists():
            return digest, False
        self._make_dir(path.parent)
        # A random temporary name of our own rather than `tempfile.mkstemp` (same flags and
        # mode), and plain `os.write`: on a small worker job the file object and mkstemp's name
        # generator were a measurable share of the write.
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, _CREATE, 0o600)
        except FileNotFoundError:  # the directory was removed behind our back
            self._dirs.discard(path.parent)
            self._make_dir(path.parent)
            fd = os.open(tmp, _CREATE, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    # The job row that points here is committed next: the bytes must survive
                    # a crash at least as well as the row does.
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.fsync:
            # The new name must reach the disk too, or a power cut can leave the committed row
            # pointing at a name that was never written.
            _fsync_dir(path.parent)
        return digest, True

    def _make_dir(self, directory: Path) -> None:
        """Make sure `directory` exists (and, for a durable store, that its name is on disk)."""
        if directory in self._dirs:
            return
        directory.mkdir(parents=True, exist_ok=True)
        if self.fsync:
            # Whoever created it (this process, another one, a worker that does not fsync), its
            # entry in objects/ (and that of objects/ in the data directory) must be durable
            # before a row points below it: at most 257 fsyncs per process, then none.
            _fsync_dir(self.root)
            _fsync_dir(self.root.parent)
        self._dirs.add(directory)

    def migrate_layout(self) -> int:
        """Move blobs of the old two-level layout (`objects/ab/cd/<hash>`) up one level.

        Idempotent; returns how many files were moved. Run before the service starts
        (`python -m imgproc.migrate` and `make run` do).
        """
        moved = 0
        for old in self.root.glob("??/??/*"):
            if old.is_file() and HEX64.fullmatch(old.name):
                os.replace(old, self.path_for(old.name))
                moved += 1
        for directory in self.root.glob("??/??"):
            with contextlib.suppress(OSError):  # not empty: left alone
                directory.rmdir()
        if moved and self.fsync:
            for directory in self.root.glob("??"):
                _fsync_dir(directory)
        return moved

    def check_writable(self, min_free_bytes: int) -> None:
        """Raise OSError unless a file can be written here and `min_free_bytes` are free."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
        stats = os.statvfs(self.root)
        free = stats.f_bavail * stats.f_frsize
        if free < min_free_bytes:
            raise OSError(
                errno.ENOSPC, f"{free} bytes free, less than one upload ({min_free_bytes} bytes)"
            )

    def has(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def local_path(self, digest: str) -> Path:
        return self.path_for(digest)

    def open(self, digest: str) -> BlobStream:
        from imgproc.storage.backend import BlobStream  # (backend imports this module)

        fh = self.path_for(digest).open("rb")
        size = os.fstat(fh.fileno()).st_size
        return BlobStream(size=size, chunks=iter(lambda: fh.read(256 * 1024), b""), close=fh.close)

    def prepare(self) -> int:
        return self.migrate_layout()

    def describe(self) -> str:
        return self.root.parent.as_uri()

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def delete(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)
