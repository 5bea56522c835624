"""What a blob store promises, and the one setting that picks it: `STORAGE_URL`.

    file:///var/lib/imgproc     ContentStore (service.py): files under <path>/objects/ab/<sha256>
    s3://bucket/some/prefix     S3Store (s3.py): objects <prefix>/objects/ab/<sha256>
    (unset)                     the file store in DATA_DIR

Every backend gives the same guarantees, which the rest of the service relies on:

- content addressing: a blob's name is the sha256 of its bytes, computed or checked by us;
  never a client-supplied name; the same bytes are stored once;
- atomic visibility: a reader sees a whole blob or none (a file renamed into place; an S3 PUT);
- a missing blob is `FileNotFoundError` (the worker fails the job with `input_missing`; the API
  computes a lost output again), and a store that cannot serve now raises another `OSError`
  (a 503 in the API, a transient retry in the worker), whatever the backend's own errors are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from imgproc.config import Settings
from imgproc.storage.service import ContentStore


@dataclass
class BlobStream:
    """An open blob: its size, its bytes in chunks, and how to let go of it."""

    size: int
    chunks: Iterator[bytes]
    close: Callable[[], None]


class BlobStore(Protocol):
    """A content-addressed blob store (see the module docstring for the guarantees)."""

    def put(self, data: bytes, digest: str | None = None) -> tuple[str, bool]:
        """Store `data`; return (its sha256, whether it was newly written)."""
        ...

    def has(self, digest: str) -> bool: ...

    def get(self, digest: str) -> bytes:
        """The blob's bytes; FileNotFoundError if it is not there."""
        ...

    def open(self, digest: str) -> BlobStream:
        """The blob as a stream; FileNotFoundError if it is not there."""
        ...

    def delete(self, digest: str) -> None: ...

    def local_path(self, digest: str) -> Path | None:
        """The blob's file, for a store on a local disk (the API sends it with sendfile)."""
        ...

    def check_writable(self, min_free_bytes: int) -> None:
        """Raise OSError unless a blob can be written now."""
        ...

    def prepare(self) -> int:
        """Bring the store to the current layout (migrate): files moved, or 0."""
        ...

    def describe(self) -> str: ...


def open_store(settings: Settings, *, fsync: bool) -> BlobStore:
    """The store `settings.effective_storage_url` names (fsync: the file store's, see there)."""
    url = urlsplit(settings.effective_storage_url)
    if url.scheme == "file":
        return ContentStore(Path(unquote(url.path)), fsync=fsync)
    if url.scheme == "s3":
        from imgproc.storage.s3 import S3Store  # boto3 loads only when it is used

        return S3Store.from_settings(settings, bucket=url.netloc, prefix=url.path.strip("/"))
    raise ValueError(f"unsupported STORAGE_URL {settings.effective_storage_url!r}")
