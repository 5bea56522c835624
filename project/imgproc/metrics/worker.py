"""Worker metrics, scrapeable from one port per worker node.

With Celery's prefork pool the jobs run in child processes, so the metrics use prometheus_client's
multiprocess mode: each process writes to files in PROMETHEUS_MULTIPROC_DIR (set in the worker's
environment before it starts, and emptied by whoever starts it) and the main process serves the
sum. Without that variable (e.g. `--pool=solo`) the process serves its own registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import psycopg
import redis
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from imgproc.config import Settings
from imgproc.jobs.repository import OLDEST_QUEUED_AGE_SQL
from shared.settings import plain_postgres_url

log = structlog.get_logger(__name__)


class JobOutcome(StrEnum):
    """What a worker did with one message (the `outcome` label)."""

    DONE = "done"
    FAILED = "failed"
    RETRY = "retry"
    SKIPPED = "skipped"  # not this worker's to run: finished, or another worker holds it


class FailureReason(StrEnum):
    """Why a job ended `failed` (the `reason` label)."""

    INVALID_IMAGE = "invalid_image"
    INPUT_MISSING = "input_missing"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    WORKER_LOST = "worker_lost"


FAILURE_REASONS = tuple(FailureReason)

# The operation label of a message whose job was not claimed (its row was not read).
UNKNOWN_OPERATION = "unknown"

JOBS_PROCESSED = Counter(
    "imgproc_jobs_processed_total",
    "Messages a worker handled, by operation and outcome (done, failed, retry, skipped);"
    " operation is 'unknown' for a message whose job was not claimed (a redelivery).",
    ["operation", "outcome"],
)
JOBS_FAILED = Counter(
    "imgproc_jobs_failed_total",
    "Jobs that ended failed, by operation and reason: invalid_image (the worker could not"
    " decode or process it), input_missing, attempts_exhausted (transient errors every try),"
    " worker_lost (the reconciler gave up on a job that kept losing its worker).",
    ["operation", "reason"],
)
PROCESSING_SECONDS = Histogram(
    "imgproc_job_processing_seconds",
    "Time to read, process and store one image, by operation.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RETRIES = Counter(
    "imgproc_job_retries_total",
    "Transient failures scheduled for a retry ('unknown': the claim itself failed).",
    ["operation"],
)
REQUEUED = Counter(
    "imgproc_reconciler_requeued_total",
    "Jobs the reconciler sent to the broker again, by the state they were stuck in.",
    ["status"],
)

# Series exist from the start (at 0), so a dashboard and an alert see "none yet", not "no data".
for _operation in ("crop", "grayscale", "resize"):
    RETRIES.labels(operation=_operation)
    for _outcome in JobOutcome:
        JOBS_PROCESSED.labels(operation=_operation, outcome=_outcome)
    for _reason in FailureReason:
        JOBS_FAILED.labels(operation=_operation, reason=_reason)
for _status in ("queued", "processing"):
    REQUEUED.labels(status=_status)


class QueueDepthCollector(Collector):
    """Read the broker queue's length at scrape time (a gauge nobody has to keep updated)."""

    def __init__(self, redis_url: str, queue_key: str) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self.queue_key = queue_key

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "imgproc_queue_depth", "Messages waiting in the broker queue.", labels=["queue"]
        )
        try:
            gauge.add_metric([self.queue_key], float(self.client.llen(self.queue_key)))
        except redis.RedisError as exc:
            log.warning("queue_depth_unavailable", error=str(exc))
            return
        yield gauge


class OldestQueuedJobCollector(Collector):
    """Age of the oldest job still `queued`, from the job table at scrape time (0: none).

    Counted from `created_at` (the submit), not `enqueued_at`: the reconciler re-sends a job
    and resets `enqueued_at`, which would hide how long a backlogged job has really waited.
    The queued rows are found through the reconciler's partial index, so a scrape reads only them.
    """

    QUERY = OLDEST_QUEUED_AGE_SQL

    def __init__(self, database_url: str) -> None:
        self.url = plain_postgres_url(database_url)
        self.conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def _age(self) -> float:
        if self.conn is None or self.conn.closed:
            # A slow database must not hang the scrape: 1 s to connect, 1 s per statement.
            self.conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=1, options="-c statement_timeout=1000"
            )
        row = self.conn.execute(self.QUERY).fetchone()
        return float(row[0]) if row is not None else 0.0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            age = self._age()
        except psycopg.Error as exc:
            log.warning("oldest_queued_job_unavailable", error=str(exc))
            self.close()  # the next scrape connects again
            return
        yield GaugeMetricFamily(
            "imgproc_oldest_queued_job_age_seconds",
            "Seconds since the oldest job still queued was submitted (0 when none is queued).",
            value=age,
        )


def start_worker_metrics_server(settings: Settings) -> None:
    """Serve this worker's metrics on settings.worker_metrics_port (0 disables it)."""
    if not settings.worker_metrics_port:
        return
    if settings.prometheus_multiproc_dir is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(settings.prometheus_multiproc_dir))  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    queue_key = f"{settings.redis_prefix}{settings.celery_queue}"
    registry.register(QueueDepthCollector(settings.redis_url, queue_key))
    registry.register(OldestQueuedJobCollector(settings.database_url))
    start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
    )
    log.info("worker_metrics_listening", port=settings.worker_metrics_port)
