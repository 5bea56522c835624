"""SQL for the job table, as Core statements both the async API and the sync worker execute.

Every state change is a guarded UPDATE: it names the state it expects, so two workers (or a
redelivered message) can never both move a job forward. `attempts` doubles as a fencing token:
a worker whose lease expired cannot overwrite the outcome of the worker that took over.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Float, Select, Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql import Executable

from imgproc.jobs.models import Job, JobStatus

jobs = cast(Table, Job.__table__)


def _seconds_ago(seconds: float) -> Any:
    return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def insert_job(values: dict[str, Any]) -> Executable:
    """Insert unless a live job with the same request key exists (then return no row)."""
    return (
        insert(jobs)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["request_key"], index_where=text("status <> 'failed'")
        )
        .returning(*jobs.c)
    )


def select_job(job_id: uuid.UUID) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id)


def select_live_by_request_key(request_key: str) -> Select[Any]:
    return select(jobs).where(jobs.c.request_key == request_key, jobs.c.status != JobStatus.FAILED)


# The worker's two hot statements are built once, with bind parameters: constructing a Core
# statement per job costs more CPU than executing it.
_CLAIM = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("job_id"),
        or_(
            jobs.c.status == JobStatus.QUEUED,
            and_(
                jobs.c.status == JobStatus.PROCESSING,
                jobs.c.started_at
                < func.now()
                - func.make_interval(0, 0, 0, 0, 0, 0, bindparam("lease", type_=Float)),
            ),
        ),
    )
    .values(
        status=JobStatus.PROCESSING,
        attempts=jobs.c.attempts + 1,
        started_at=func.now(),
        updated_at=func.now(),
    )
    .returning(*jobs.c)
)


def _owned(job_id: Any, attempt: Any) -> Any:
    return and_(
        jobs.c.id == job_id,
        jobs.c.status == JobStatus.PROCESSING,
        jobs.c.attempts == attempt,
    )


_MARK_DONE = (
    update(jobs)
    .where(_owned(bindparam("job_id"), bindparam("attempt")))
    .values(
        status=JobStatus.DONE,
        output_sha256=bindparam("out_sha256"),
        output_format=bindparam("out_format"),
        output_width=bindparam("out_width"),
        output_height=bindparam("out_height"),
        error=None,
        updated_at=func.now(),
        finished_at=func.now(),
    )
    .returning(*jobs.c)
)

Statement = tuple[Executable, dict[str, Any]]


def claim(job_id: uuid.UUID, *, lease_seconds: float) -> Statement:
    """queued -> processing (or take over a processing job whose lease ran out)."""
    return _CLAIM, {"job_id": job_id, "lease": lease_seconds}


def mark_done(
    job_id: uuid.UUID, attempt: int, *, sha256: str, fmt: str, width: int, height: int
) -> Statement:
    params = {"out_sha256": sha256, "out_format": fmt, "out_width": width, "out_height": height}
    return _MARK_DONE, {"job_id": job_id, "attempt": attempt, **params}


def mark_failed(job_id: uuid.UUID, attempt: int | None, *, error: str) -> Executable:
    """processing -> failed (attempt=None: any unfinished job, used by the reconciler)."""
    if attempt is None:
        where = and_(
            jobs.c.id == job_id, jobs.c.status.in_([JobStatus.QUEUED, JobStatus.PROCESSING])
        )
    else:
        where = _owned(job_id, attempt)
    return (
        update(jobs)
        .where(where)
        .values(
            status=JobStatus.FAILED,
            error=error,
            updated_at=func.now(),
            finished_at=func.now(),
        )
        .returning(*jobs.c)
    )


def release_for_retry(job_id: uuid.UUID, attempt: int, *, error: str, delay: float) -> Executable:
    """processing -> queued after a transient error; the reconciler waits out the backoff."""
    return (
        update(jobs)
        .where(_owned(job_id, attempt))
        .values(
            status=JobStatus.QUEUED,
            error=error,
            updated_at=func.now(),
            enqueued_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay),
        )
        .returning(*jobs.c)
    )


def requeue_lost_result(job_id: uuid.UUID) -> Executable:
    """done -> queued, for a job whose output file is gone."""
    return (
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobStatus.DONE)
        .values(
            status=JobStatus.QUEUED,
            error="the result file was lost; computing it again",
            output_sha256=None,
            updated_at=func.now(),
            enqueued_at=func.now(),
            finished_at=None,
        )
        .returning(*jobs.c)
    )


def take_stuck(*, queued_timeout: float, processing_timeout: float, limit: int) -> Executable:
    """Mark and return jobs with no progress for too long (skipping rows others hold)."""
    stuck = (
        select(jobs.c.id)
        .where(
            or_(
                and_(
                    jobs.c.status == JobStatus.QUEUED,
                    jobs.c.enqueued_at < _seconds_ago(queued_timeout),
                ),
                and_(
                    jobs.c.status == JobStatus.PROCESSING,
                    jobs.c.started_at < _seconds_ago(processing_timeout),
                    jobs.c.enqueued_at < _seconds_ago(processing_timeout),
                ),
            )
        )
        .order_by(jobs.c.enqueued_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(jobs)
        .where(jobs.c.id.in_(stuck))
        .values(enqueued_at=func.now())
        .returning(jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.error)
    )
