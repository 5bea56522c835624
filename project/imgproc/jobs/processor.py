"""What a worker does with one job id: claim, process, store, record. Plain functions.

The Celery task in `tasks.py` is a thin wrapper, so tests call `run_job` directly for the logic
and use a real worker process for the wiring.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from imgproc.cache.service import SyncCache
from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.images.exceptions import ImageError
from imgproc.images.schemas import Operation, parse_params
from imgproc.images.service import EncodeOptions, process_image
from imgproc.jobs import repository as repo
from imgproc.jobs.models import FINAL_STATUSES, JobStatus
from imgproc.jobs.schemas import TaskStatus
from imgproc.metrics.worker import JOBS_PROCESSED, PROCESSING_SECONDS, RETRIES
from imgproc.storage.service import ContentStore

log = structlog.get_logger(__name__)

# Errors worth another try: the database, the disk or the network hiccupped. Anything about the
# image itself is an ImageError and final.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, DBAPIError, OSError)


@dataclass
class WorkerContext:
    """Connections of one worker process (created after the fork, never shared)."""

    settings: Settings
    engine: Engine
    store: ContentStore
    cache: SyncCache

    @classmethod
    def create(cls, settings: Settings) -> WorkerContext:
        return cls(
            settings=settings,
            engine=make_sync_engine(settings.database_url),
            # Outputs are not fsynced: they can be recomputed from the (fsynced) input, and the
            # API does exactly that if a crash ever loses one (see jobs.service.get_result).
            store=ContentStore(settings.data_dir, fsync=False),
            cache=SyncCache(
                settings.effective_cache_url,
                settings.redis_prefix,
                timeout=settings.cache_socket_timeout,
            ),
        )


_contexts: dict[int, WorkerContext] = {}


def context_for(settings: Settings) -> WorkerContext:
    """Return this process's context, creating it on first use after a fork."""
    pid = os.getpid()
    if pid not in _contexts:
        _contexts.clear()  # inherited from the parent: its sockets are not ours to use
        _contexts[pid] = WorkerContext.create(settings)
    return _contexts[pid]


@dataclass(frozen=True)
class Outcome:
    name: str  # done | failed | retry | skipped
    retry_in: float | None = None


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5..1."""
    return min(cap, base * 2.0 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


def publish_status(ctx: WorkerContext, row: Any) -> None:
    """Write the new status through to the cache (overwriting whatever a reader put there)."""
    doc = TaskStatus.from_row(row._mapping)
    ttl = (
        ctx.settings.final_ttl_seconds
        if doc.status in FINAL_STATUSES
        else ctx.settings.status_ttl_seconds
    )
    ctx.cache.set(ctx.cache.keys.status(str(doc.task_id)), doc.model_dump_json(), ttl=ttl)
    if doc.status == JobStatus.FAILED:
        # A failed job must not answer identical requests: let them start a fresh job.
        ctx.cache.delete(ctx.cache.keys.dedup(row.request_key))


def _fail(ctx: WorkerContext, job: Any, error: str, *, operation: str) -> Outcome:
    with ctx.engine.begin() as conn:
        row = conn.execute(repo.mark_failed(job.id, job.attempts, error=error)).first()
    if row is None:
        return Outcome("skipped")
    publish_status(ctx, row)
    JOBS_PROCESSED.labels(operation=operation, outcome="failed").inc()
    log.warning("job_failed", error=error)
    return Outcome("failed")


def _retry_or_fail(ctx: WorkerContext, job: Any, exc: BaseException, operation: str) -> Outcome:
    error = f"transient error: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
    settings = ctx.settings
    if job.attempts >= settings.max_attempts:
        return _fail(
            ctx, job, f"gave up after {job.attempts} attempts; last {error}", operation=operation
        )
    delay = backoff_delay(
        job.attempts, base=settings.retry_backoff_base, cap=settings.retry_backoff_max
    )
    try:
        with ctx.engine.begin() as conn:
            row = conn.execute(
                repo.release_for_retry(job.id, job.attempts, error=error, delay=delay)
            ).first()
        if row is not None:
            publish_status(ctx, row)
    except TRANSIENT_ERRORS:
        # The database is the trouble: the reconciler re-sends the job once its lease ends.
        log.warning("job_release_failed", exc_info=True)
    RETRIES.labels(operation=operation).inc()
    JOBS_PROCESSED.labels(operation=operation, outcome="retry").inc()
    log.warning("job_retry", error=error, retry_in=round(delay, 3))
    return Outcome("retry", retry_in=delay)


def run_job(ctx: WorkerContext, job_id: str) -> Outcome:
    """Process job `job_id` at most once per successful claim; never raise for bad images."""
    try:
        uid = uuid.UUID(job_id)
    except ValueError:
        log.error("job_id_malformed", job_id=job_id)
        return Outcome("skipped")
    settings = ctx.settings
    try:
        with ctx.engine.begin() as conn:
            job = conn.execute(
                *repo.claim(uid, lease_seconds=settings.processing_timeout_seconds)
            ).first()
    except TRANSIENT_ERRORS as exc:
        # Nothing was claimed, so nothing to release: just try this message again later.
        delay = backoff_delay(1, base=settings.retry_backoff_base, cap=settings.retry_backoff_max)
        log.warning("job_claim_failed", job_id=job_id, error=str(exc), retry_in=round(delay, 3))
        return Outcome("retry", retry_in=delay)
    if job is None:
        # Already finished, or another worker holds a live lease: a redelivery, not work.
        log.info("job_not_claimed", job_id=job_id)
        return Outcome("skipped")
    operation = job.operation
    structlog.contextvars.bind_contextvars(
        job_id=job_id, request_id=job.request_id, operation=operation, attempt=job.attempts
    )
    try:
        return _process_claimed(ctx, job, operation)
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "request_id", "operation", "attempt")


def _process_claimed(ctx: WorkerContext, job: Any, operation: str) -> Outcome:
    settings = ctx.settings
    log.info("job_started")
    if job.attempts > settings.max_attempts:
        return _fail(
            ctx,
            job,
            f"gave up after {job.attempts - 1} attempts: {job.error or 'worker lost'}",
            operation=operation,
        )
    publish_status(ctx, job)
    started = time.perf_counter()
    try:
        data = ctx.store.get(job.input_sha256)
    except FileNotFoundError:
        return _fail(ctx, job, "the stored upload is missing", operation=operation)
    except TRANSIENT_ERRORS as exc:
        return _retry_or_fail(ctx, job, exc, operation)
    if settings.worker_slowdown_seconds:
        time.sleep(settings.worker_slowdown_seconds)
    try:
        params = parse_params(Operation(operation), job.params)
        result = process_image(
            data,
            Operation(operation),
            params,
            max_pixels=settings.max_pixels,
            options=EncodeOptions(
                jpeg_quality=settings.jpeg_quality,
                webp_quality=settings.webp_quality,
                png_compress_level=settings.png_compress_level,
            ),
        )
    except ImageError as exc:
        return _fail(ctx, job, exc.message, operation=operation)
    try:
        digest, _ = ctx.store.put(result.data)
        with ctx.engine.begin() as conn:
            row = conn.execute(
                *repo.mark_done(
                    job.id,
                    job.attempts,
                    sha256=digest,
                    fmt=result.format,
                    width=result.width,
                    height=result.height,
                )
            ).first()
    except TRANSIENT_ERRORS as exc:
        return _retry_or_fail(ctx, job, exc, operation)
    if row is None:
        log.warning("job_lease_lost")  # another worker took over; its outcome stands
        JOBS_PROCESSED.labels(operation=operation, outcome="skipped").inc()
        return Outcome("skipped")
    elapsed = time.perf_counter() - started
    PROCESSING_SECONDS.labels(operation=operation).observe(elapsed)
    JOBS_PROCESSED.labels(operation=operation, outcome="done").inc()
    publish_status(ctx, row)
    log.info("job_done", seconds=round(elapsed, 4), width=result.width, height=result.height)
    return Outcome("done")
