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
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from imgproc.cache.service import SyncCache
from imgproc.config import Settings
from imgproc.db import DriverConnection, make_sync_engine
from imgproc.images.exceptions import ImageError
from imgproc.images.schemas import Operation, parse_params
from imgproc.images.service import EncodeOptions, process_image
from imgproc.jobs import repository as repo
from imgproc.jobs.models import JobRecord
from imgproc.jobs.schemas import TaskStatus
from imgproc.jobs.status_cache import StatusKeys, transition_commands
from imgproc.metrics.worker import (
    JOBS_FAILED,
    JOBS_PROCESSED,
    PROCESSING_SECONDS,
    RETRIES,
    UNKNOWN_OPERATION,
    FailureReason,
    JobOutcome,
)
from imgproc.storage.backend import BlobStore, open_store

log = structlog.get_logger(__name__)

# Errors worth another try: the database, the disk or the network hiccupped. Anything about the
# image itself is an ImageError and final.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    DBAPIError,
    *DriverConnection.DISCONNECTED,
    OSError,
)


@dataclass
class WorkerContext:
    """Connections of one worker process (created after the fork, never shared)."""

    settings: Settings
    engine: Engine  # SQLAlchemy, for the rare statements (failures, retries, reconciler)
    db: DriverConnection  # plain psycopg, for the per-job claim and done
    store: BlobStore
    # Status writes are sent without waiting for Redis's reply (see SyncCache): no round trip on
    # the job's path, and no second thread to compete with Pillow for the GIL.
    cache: SyncCache
    keys: StatusKeys
    encode: EncodeOptions

    def close(self) -> None:
        self.cache.close()
        self.db.close()
        self.engine.dispose()

    @classmethod
    def create(cls, settings: Settings) -> WorkerContext:
        return cls(
            settings=settings,
            engine=make_sync_engine(settings.database_url),
            db=DriverConnection(settings.database_url),
            # Outputs are not fsynced: they can be recomputed from the (fsynced) input, and the
            # API does exactly that if a crash ever loses one (see jobs.service.get_result).
            store=open_store(settings, fsync=False),
            cache=SyncCache(settings.effective_cache_url, timeout=settings.cache_socket_timeout),
            keys=StatusKeys(settings.redis_prefix),
            encode=encode_options(settings),
        )


def encode_options(settings: Settings) -> EncodeOptions:
    """The encoder settings every worker (and the bench's plain loop) writes outputs with."""
    return EncodeOptions(
        jpeg_quality=settings.jpeg_quality,
        webp_quality=settings.webp_quality,
        png_compress_level=settings.png_compress_level,
    )


_contexts: dict[int, WorkerContext] = {}


def context_for(settings: Settings) -> WorkerContext:
    """Return this process's context, creating it on first use after a fork."""
    pid = os.getpid()
    if pid not in _contexts:
        _contexts.clear()  # inherited from the parent: its sockets are not ours to use
        _contexts[pid] = WorkerContext.create(settings)
    return _contexts[pid]


def close_context() -> None:
    """Close this process's context (at shutdown: the cache's last replies are read)."""
    ctx = _contexts.pop(os.getpid(), None)
    if ctx is not None:
        try:
            ctx.close()
        except Exception:  # shutting down anyway; say why, do not stop the shutdown
            log.warning("worker_context_close_failed", exc_info=True)


@dataclass(frozen=True)
class Outcome:
    name: JobOutcome
    operation: str = UNKNOWN_OPERATION  # the metric label; unknown when no row was claimed
    retry_in: float | None = None
    reason: FailureReason | None = None  # of a failure
    # The attempt this worker holds and could not release (the database was down): the retry
    # message carries it, so the job is taken back at once instead of after its lease.
    held_attempt: int | None = None


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5..1."""
    return min(cap, base * 2.0 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)


def publish_status(ctx: WorkerContext, job: JobRecord) -> None:
    """Write the job's new status through to the cache (see jobs/status_cache.py).

    Sent now, the reply read at the next write (see SyncCache); never raises.
    """
    try:
        status = TaskStatus.from_record(job)
        ctx.cache.send(*transition_commands(ctx.settings, ctx.keys, status, job.request_key))
    except Exception:  # the cache is an optimisation: never lose a job over it
        log.exception("status_publish_failed", job_id=str(job.id))


def _fail(ctx: WorkerContext, job: JobRecord, error: str, reason: FailureReason) -> Outcome:
    try:
        with ctx.engine.begin() as conn:
            failed = repo.record(conn.execute(repo.mark_failed(job.id, job.attempts, error=error)))
    except TRANSIENT_ERRORS:
        # Not recorded: the job stays `processing`; the reconciler re-sends it after its lease
        # and the next attempt records the outcome.
        log.warning("job_fail_unrecorded", error=error, exc_info=True)
        return Outcome(JobOutcome.SKIPPED)
    if failed is None:
        return Outcome(JobOutcome.SKIPPED, job.operation)
    publish_status(ctx, failed)
    log.warning("job_failed", error=error)
    return Outcome(JobOutcome.FAILED, job.operation, reason=reason)


def _retry_or_fail(ctx: WorkerContext, job: JobRecord, exc: BaseException) -> Outcome:
    """Put the job back for another try, or fail it when its budget is spent.

    Transient errors (the infrastructure's) are retried until `transient_retry_budget_seconds`
    after the first of them; any other error counts as an attempt, limited by `max_attempts`.
    """
    transient = isinstance(exc, TRANSIENT_ERRORS)
    kind = "transient" if transient else "unexpected"
    error = f"{kind} error: {type(exc).__name__}: {(str(exc).strip() or '-').splitlines()[0][:300]}"
    settings = ctx.settings
    base, cap = settings.retry_backoff_base, settings.retry_backoff_max
    if transient:
        budget = settings.transient_retry_budget_seconds
        since = job.retrying_since
        if since is not None and (datetime.now(UTC) - since).total_seconds() > budget:
            reason = (
                f"gave up after {budget:g} s of transient errors ({job.transient_retries}"
                f" retries); last {error}"
            )
            return _fail(ctx, job, reason, FailureReason.ATTEMPTS_EXHAUSTED)
        delay = backoff_delay(job.transient_retries + 1, base=base, cap=cap)
    else:
        if job.crashes >= settings.max_attempts:
            reason = f"gave up after {job.crashes} attempts; last {error}"
            return _fail(ctx, job, reason, FailureReason.ATTEMPTS_EXHAUSTED)
        delay = backoff_delay(job.crashes, base=base, cap=cap)
    release = repo.release_for_retry(
        job.id, job.attempts, error=error, delay=delay, transient=transient
    )
    try:
        with ctx.engine.begin() as conn:
            released = repo.record(conn.execute(release))
    except TRANSIENT_ERRORS:
        # The database is the trouble: the retry message itself will take the job back.
        log.warning("job_release_failed", exc_info=True)
        return Outcome(JobOutcome.RETRY, job.operation, retry_in=delay, held_attempt=job.attempts)
    if released is not None:
        publish_status(ctx, released)
    log.warning("job_retry", error=error, retry_in=round(delay, 3))
    return Outcome(JobOutcome.RETRY, job.operation, retry_in=delay)


def run_job(
    ctx: WorkerContext,
    job_id: str,
    *,
    redelivered: bool = False,
    held_attempt: int | None = None,
    retries: int = 0,
) -> Outcome:
    """Process job `job_id` at most once per successful claim; never raise for bad images.

    `redelivered`: the broker gave this message back because the worker that had it died, so a
    `processing` row is that dead worker's and is taken over at once (see repository.claim).
    `held_attempt`: see Outcome. `retries`: how often this message was retried already (the
    backoff of a claim that failed grows with it). Every message is counted once, here.
    """
    outcome = _run_job(
        ctx, job_id, redelivered=redelivered, held_attempt=held_attempt, retries=retries
    )
    JOBS_PROCESSED.labels(operation=outcome.operation, outcome=outcome.name).inc()
    if outcome.name == JobOutcome.RETRY:
        RETRIES.labels(operation=outcome.operation).inc()
    if outcome.reason is not None:
        JOBS_FAILED.labels(operation=outcome.operation, reason=outcome.reason).inc()
    return outcome


def _run_job(
    ctx: WorkerContext, job_id: str, *, redelivered: bool, held_attempt: int | None, retries: int
) -> Outcome:
    try:
        uid = uuid.UUID(job_id)
    except ValueError:
        log.error("job_id_malformed", job_id=job_id)
        return Outcome(JobOutcome.SKIPPED)
    settings = ctx.settings
    try:
        job = repo.claim(
            ctx.db,
            uid,
            lease_seconds=settings.processing_timeout_seconds,
            takeover=redelivered,
            held_attempt=held_attempt,
        )
    except TRANSIENT_ERRORS as exc:
        # Nothing was claimed, so nothing to release: just try this message again later.
        base, cap = settings.retry_backoff_base, settings.retry_backoff_max
        delay = backoff_delay(retries + 1, base=base, cap=cap)
        log.warning("job_claim_failed", job_id=job_id, error=str(exc), retry_in=round(delay, 3))
        return Outcome(JobOutcome.RETRY, retry_in=delay, held_attempt=held_attempt)
    if job is None:
        # Already finished, or another worker holds a live lease: a redelivery, not work.
        log.info("job_not_claimed", job_id=job_id, redelivered=redelivered)
        return Outcome(JobOutcome.SKIPPED)
    structlog.contextvars.bind_contextvars(
        job_id=job_id, request_id=job.request_id, operation=job.operation, attempt=job.attempts
    )
    try:
        return _process_claimed(ctx, job)
    except Exception as exc:
        # A bug or a surprise, not the image's fault: retried like a transient error, then
        # failed with the real reason, instead of leaving the job `processing` until its lease.
        log.exception("job_crashed")
        return _retry_or_fail(ctx, job, exc)
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "request_id", "operation", "attempt")


def _process_claimed(ctx: WorkerContext, job: JobRecord) -> Outcome:
    settings = ctx.settings
    # One INFO line per job, `job_done` (or the failure's): a formatted JSON line costs more
    # than the claim's round trip. The start is in the `done` line's `seconds`, and at DEBUG.
    log.debug("job_started")
    if job.crashes > settings.max_attempts:
        reason = f"gave up after {job.crashes - 1} attempts: {job.error or 'worker lost'}"
        return _fail(ctx, job, reason, FailureReason.WORKER_LOST)
    started = time.perf_counter()
    try:
        data = ctx.store.get(job.input_sha256)
    except FileNotFoundError:
        return _fail(ctx, job, "the stored upload is missing", FailureReason.INPUT_MISSING)
    except TRANSIENT_ERRORS as exc:
        return _retry_or_fail(ctx, job, exc)
    publish_status(ctx, job)
    operation = Operation(job.operation)
    try:
        result = process_image(
            data,
            operation,
            parse_params(operation, job.params),
            max_pixels=settings.max_pixels,
            options=ctx.encode,
        )
    except ImageError as exc:
        return _fail(ctx, job, exc.message, FailureReason.INVALID_IMAGE)
    try:
        digest, _ = ctx.store.put(result.data)
        done = repo.mark_done(
            ctx.db,
            job.id,
            job.attempts,
            sha256=digest,
            fmt=result.format,
            width=result.width,
            height=result.height,
        )
    except TRANSIENT_ERRORS as exc:
        return _retry_or_fail(ctx, job, exc)
    if done is None:
        log.warning("job_lease_lost")  # another worker took over; its outcome stands
        return Outcome(JobOutcome.SKIPPED, job.operation)
    publish_status(ctx, done)
    elapsed = time.perf_counter() - started
    PROCESSING_SECONDS.labels(operation=job.operation).observe(elapsed)
    log.info("job_done", seconds=round(elapsed, 4), width=result.width, height=result.height)
    return Outcome(JobOutcome.DONE, job.operation)
