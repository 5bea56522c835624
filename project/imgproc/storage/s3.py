"""Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph RGW...), through boto3.

The same guarantees as the file store (backend.py): keys are `<prefix>/objects/ab/<sha256>`,
built from a digest we computed; every PUT sends that digest as the object's SHA-256 checksum,
so the server itself refuses bytes that do not match their name; a PUT is atomic (the object
appears whole or not at all); a missing object is `FileNotFoundError`; any other failure of
the store (connection refused, timeout, a 5xx, throttling, a missing bucket, denied access) is
`StorageUnavailable`, an `OSError`, which the API answers with 503 and the worker retries.

Only the standard S3 API is used, nothing specific to one server.
"""

from __future__ import annotations

import base64
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imgproc.config import Settings
from imgproc.storage.backend import BlobStream
from imgproc.storage.service import HEX64, sha256_hex

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CHUNK = 256 * 1024


class StorageUnavailable(OSError):
    """The object store cannot serve now (or is misconfigured): a 503 / a transient retry."""


def _unavailable(exc: Exception, what: str) -> StorageUnavailable:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', '?')}: {error.get('Message', '')}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return StorageUnavailable(errno.EIO, f"object store: {what} failed: {detail}"[:400])


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3Store:
    """Content-addressed blobs in one bucket, under one key prefix."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        if not bucket:
            raise ValueError("STORAGE_URL s3://bucket/prefix needs a bucket")
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        # One probe key per process: /readyz overwrites it instead of leaving new ones.
        self._probe = f"{self.prefix}.probe/{socket.gethostname()}-{os.getpid()}"

    @classmethod
    def from_settings(cls, settings: Settings, *, bucket: str, prefix: str) -> S3Store:
        config = Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 3, "mode": "standard"},
            # API threads and a prefork worker's process share one client (it is thread-safe).
            max_pool_connections=max(10, settings.db_pool_size),
            s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
        )
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=config,
        )
        return cls(client, bucket, prefix)

    def key(self, digest: str) -> str:
        if not HEX64.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return f"{self.prefix}objects/{digest[:2]}/{digest}"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def local_path(self, digest: str) -> Path | None:
        return None  # nothing local: the API streams the object

    def put(self, data: bytes, digest: str | None = None) -> tuple[str, bool]:
        digest = digest or sha256_hex(data)
        key = self.key(digest)
        if self.has(digest):
            return digest, False
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        try:
            # Acknowledged means stored durably by the server: no fsync to add.
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ChecksumSHA256=checksum,
                ContentType="application/octet-stream",
            )
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, f"PUT {key}") from exc
        return digest, True

    def has(self, digest: str) -> bool:
        key = self.key(digest)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise _unavailable(exc, f"HEAD {key}") from exc
        except BotoCoreError as exc:
            raise _unavailable(exc, f"HEAD {key}") from exc
        return True

    def _get(self, digest: str) -> Any:
        key = self.key(digest)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(errno.ENOENT, f"no object {key}") from exc
            raise _unavailable(exc, f"GET {key}") from exc
        except BotoCoreError as exc:
            raise _unavailable(exc, f"GET {key}") from exc

    def get(self, digest: str) -> bytes:
        response = self._get(digest)
        try:
            data: bytes = response["Body"].read()
        except (BotoCoreError, OSError) as exc:
            raise _unavailable(exc, f"reading {self.key(digest)}") from exc
        finally:
            response["Body"].close()
        return data

    def open(self, digest: str) -> BlobStream:
        response = self._get(digest)
        body = response["Body"]
        chunks: Iterator[bytes] = body.iter_chunks(_CHUNK)
        return BlobStream(size=int(response["ContentLength"]), chunks=chunks, close=body.close)

    def delete(self, digest: str) -> None:
        key = self.key(digest)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)  # no error if absent
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, f"DELETE {key}") from exc

    def check_writable(self, min_free_bytes: int) -> None:
        """A probe object written and deleted (an object store has no "free space" to read)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._probe, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=self._probe)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, "writing a probe object") from exc

    def prepare(self) -> int:
        """Create the bucket if it does not exist yet (migrate runs this); 0 files moved."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return 0
        except ClientError as exc:
            if not _missing(exc):
                raise _unavailable(exc, f"HEAD bucket {self.bucket}") from exc
        except BotoCoreError as exc:
            raise _unavailable(exc, f"HEAD bucket {self.bucket}") from exc
        region = self.client.meta.region_name
        try:
            if region in (None, "us-east-1"):
                self.client.create_bucket(Bucket=self.bucket)
            else:
                self.client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _unavailable(exc, f"creating bucket {self.bucket}") from exc
        return 0
