"""A real S3 server for the object-store tests: moto in server mode (`moto_server`).

No MinIO can be installed on the course machines, so the S3 implementation we can run here is
moto's server (PyPI `moto[server]`), a separate process speaking the S3 HTTP API on a free port.
The backend under test (`imgproc/storage/s3.py`) knows nothing about moto: it gets an endpoint
URL and credentials, exactly as it would for MinIO or AWS.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from devtools.launch import Child, free_port

from imgproc.config import Settings
from shared.testing.process import http_ok

MOTO_SERVER = Path(sys.executable).with_name("moto_server")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server process started for this test session."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = Child(
        "moto_server", [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], env, log
    ).start()
    url = f"http://127.0.0.1:{port}"
    child.wait_until(http_ok(url, below=500), timeout=30, what="answering HTTP")
    yield url
    child.stop()


S3Settings = Callable[..., Settings]


@pytest.fixture
def s3_settings(s3_endpoint: str) -> S3Settings:
    """`s3_settings(base, bucket=None)`: `base` pointed at a fresh bucket on the moto server."""

    def make(base: Settings, bucket: str | None = None) -> Settings:
        bucket = bucket or f"imgproc-{uuid.uuid4().hex[:12]}"
        return base.model_copy(
            update={
                "storage_url": f"s3://{bucket}/run/blobs",
                "s3_endpoint_url": s3_endpoint,
                "s3_access_key_id": "test-key",
                "s3_secret_access_key": "test-secret",
            }
        )

    return make
