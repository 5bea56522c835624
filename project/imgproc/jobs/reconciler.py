"""Re-send jobs that made no progress for too long: the broker is a hint, PostgreSQL the truth.

A job whose message vanished (Redis restarted empty, a publish that failed after the commit)
stays `queued`; a job whose worker died stays `processing`. Both get a new message; the guarded
claim makes duplicates harmless. A job that killed its worker `max_attempts` times fails.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from imgproc.jobs import repository as repo
from imgproc.jobs.models import JobStatus
from imgproc.jobs.processor import WorkerContext, publish_status
from imgproc.metrics.worker import JOBS_FAILED, REQUEUED, FailureReason

log = structlog.get_logger(__name__)


def reconcile(ctx: WorkerContext, send: Callable[[str], None]) -> dict[str, int]:
    """Re-send stuck jobs through `send(job_id)`; return counts by what was done."""
    settings = ctx.settings
    with ctx.engine.begin() as conn:
        stuck = conn.execute(
            repo.take_stuck(
                queued_timeout=settings.queued_timeout_seconds,
                processing_timeout=settings.processing_timeout_seconds,
                limit=settings.reconcile_batch,
            )
        ).all()
    counts = {"requeued": 0, "failed": 0}
    for job in stuck:
        crashes = job.attempts - job.transient_retries
        if job.status == JobStatus.PROCESSING and crashes >= settings.max_attempts:
            error = f"the worker was lost {job.attempts} times while processing it"
            with ctx.engine.begin() as conn:
                failed = repo.record(conn.execute(repo.mark_failed(job.id, None, error=error)))
            if failed is not None:
                publish_status(ctx, failed)
                JOBS_FAILED.labels(
                    operation=failed.operation, reason=FailureReason.WORKER_LOST
                ).inc()
                counts["failed"] += 1
            continue
        send(str(job.id))
        REQUEUED.labels(status=job.status).inc()
        counts["requeued"] += 1
    if stuck:
        log.warning("reconciler_requeued", **counts)
    return counts
