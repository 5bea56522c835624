"""Settings of the API, the worker and the beat scheduler (one class, read from the environment).

Field names are the environment variable names (case-insensitive), e.g. `DATA_DIR`,
`MAX_UPLOAD_BYTES`, `CELERY_QUEUE`; the backing-service URLs come from `ServiceSettings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from limits import parse as parse_rate
from pydantic import Field, field_validator

from shared.settings import ServiceSettings

# Local state of `make run` / `make demo` (git-ignored); compose mounts a volume instead.
VAR_DIR = Path(__file__).resolve().parents[1] / "var"


class Settings(ServiceSettings):
    """Everything the service can be told from outside; defaults suit a laptop."""

    data_dir: Path = Field(default=VAR_DIR / "data", description="content-addressed files")
    # Where blobs live: `file:///path` or `s3://bucket/prefix` (unset: the file store in
    # DATA_DIR). The S3 client reads the S3_* fields below, else boto3's usual chain.
    storage_url: str | None = None
    s3_endpoint_url: str | None = Field(default=None, description="MinIO etc.; unset: AWS")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # MinIO and most S3-compatible servers want path-style URLs (http://host/bucket/key).
    s3_path_style: bool = True
    # imgproxy's defaults: 16.8 megapixels and a 20 MB upload.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=16_800_000, ge=1)
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    webp_quality: int = Field(default=80, ge=1, le=100)
    png_compress_level: int = Field(default=3, ge=0, le=9)
    # Workers keep freed image memory for the next image instead of returning it to the kernel
    # and faulting it back in (see images/memory.py); off: smaller idle memory, slower big jobs.
    keep_image_memory: bool = True
    # fsync each upload before its job row is committed (off: faster, but a power cut can leave
    # a row whose input is gone; that job then fails with a clear "missing" error).
    storage_fsync: bool = True

    celery_queue: str = Field(default="imgproc", description="queue name (under REDIS_PREFIX)")
    # Unacked messages older than this go back to the queue (kombu's Redis transport).
    broker_visibility_timeout: int = Field(default=3600, ge=1)
    # Attempts that crashed or hit an unexpected error; then the job fails.
    max_attempts: int = Field(default=5, ge=1)
    # Transient errors (database restarting, disk full, network) are retried, with capped
    # exponential backoff and jitter, until this long after the first of them.
    transient_retry_budget_seconds: float = Field(default=900.0, gt=0)
    retry_backoff_base: float = Field(default=1.0, gt=0)
    retry_backoff_max: float = Field(default=60.0, gt=0)
    # The reconciler re-enqueues jobs that sat this long without progress.
    queued_timeout_seconds: float = Field(default=300.0, gt=0)
    processing_timeout_seconds: float = Field(default=300.0, gt=0)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    reconcile_batch: int = Field(default=500, ge=1)

    cache_url: str | None = Field(default=None, description="Redis for caching; REDIS_URL if unset")
    cache_socket_timeout: float = Field(default=0.25, gt=0)
    status_ttl_seconds: int = Field(default=30, ge=1, description="TTL of a non-final status")
    final_ttl_seconds: int = Field(default=3600, ge=1, description="TTL of done/failed entries")

    db_pool_size: int = Field(default=20, ge=1)
    # A pooled API connection idle this long is pinged before use (db.py, _ping_when_idle).
    db_ping_after_idle_seconds: float = Field(default=2.0, ge=0)

    # Protection under overload (imgproc/overload/). Rate limits per client (the X-API-Key
    # header, else the address), in the `limits` notation ("60/minute", "5 per 10 seconds");
    # empty: off. RATE_LIMIT covers the uploads, READ_RATE_LIMIT status and result.
    rate_limit: str = ""
    read_rate_limit: str = ""
    # Load shedding: new uploads get 503 while more jobs than this wait (0: off) or while the
    # oldest queued job is older than this (0: off). Read at most once per interval per process.
    max_queued_jobs: int = Field(default=5000, ge=0)
    max_queued_age_seconds: float = Field(default=0.0, ge=0)
    load_check_interval_seconds: float = Field(default=1.0, gt=0)
    shed_retry_after_seconds: int = Field(default=10, ge=1)
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    prometheus_multiproc_dir: Path | None = None
    api_port: int = Field(default=8000, description="port of `make run`")
    flower_port: int = Field(default=5555, description="port of `make run`'s Flower")
    # Task events and remote control for Flower (off: no broadcast traffic on a shared Redis).
    celery_monitoring: bool = False
    # The demo page's folder (project/frontend): `make run` serves it at /ui/ on the API's own
    # origin; in the compose stack nginx serves it, so this stays unset there.
    frontend_dir: Path | None = None
    log_json: bool = True
    log_level: str = "INFO"

    @property
    def effective_cache_url(self) -> str:
        return self.cache_url or self.redis_url

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or self.data_dir.resolve().as_uri()

    @field_validator("rate_limit", "read_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value.strip():
            parse_rate(value)  # ValueError names the notation it expects
        return value.strip()

    @field_validator("storage_url")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value and not value.startswith(("file:///", "s3://")):
            raise ValueError(f"STORAGE_URL must be file:///path or s3://bucket/prefix: {value!r}")
        return value or None

    @field_validator("s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None  # compose passes `VAR=` for "not set"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once from the environment)."""
    return Settings()
