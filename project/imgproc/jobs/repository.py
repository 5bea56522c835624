"""All SQL of the job table (no other module writes SQL).

Most statements are SQLAlchemy Core, executed by the async API and by the sync worker, which
turn the row they return into a `JobRecord` with `record()`; the worker's two per-job
statements (claim, done) are plain SQL run on psycopg (see CLAIM_SQL).

Every state change is a guarded UPDATE: it names the state it expects, so two workers (or a
redelivered message) can never both move a job forward. `attempts` doubles as a fencing token:
a worker whose lease expired cannot overwrite the outcome of the worker that took over.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Select, Table, and_, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Result
from sqlalchemy.sql import Executable

from imgproc.db import DriverConnection
from imgproc.jobs.models import Job, JobRecord, JobStatus

jobs = cast(Table, Job.__table__)


def record(result: Result[Any]) -> JobRecord | None:
    """The first row of `result` as a JobRecord (None if there is none)."""
    row = result.mappings().first()
    return None if row is None else JobRecord.from_mapping(row)


def row_record(row: Mapping[str, Any] | None) -> JobRecord | None:
    """A row the driver returned (psycopg dict, asyncpg Record) as a JobRecord, or None."""
    return None if row is None else JobRecord.from_mapping(row)


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


# The API's INSERT (plain SQL, run on the asyncpg connection itself: SQLAlchemy's execute path
# costs more CPU than the statement; see jobs.service.driver_transaction), with the blob's
# shared lock taken in the same
# statement: the row comes out of the CTE, so the lock is held before the row is written, and
# until the commit, exactly as `lock_blob` then `insert_job` in two round trips. ($9 is the
# digest again, as text for the hash: one parameter in two contexts would need one type.)
INSERT_JOB_SQL = """
WITH blob_lock AS (SELECT pg_advisory_xact_lock_shared(hashtextextended($9::text, 0)))
INSERT INTO imgproc_jobs (id, operation, params, status, request_key, input_sha256,
                          input_format, input_bytes, request_id)
SELECT $1, $2, $3, 'queued', $4, $5, $6, $7, $8 FROM blob_lock
ON CONFLICT (request_key) WHERE status <> 'failed' DO NOTHING
RETURNING *
"""


def insert_job_params(values: dict[str, Any]) -> tuple[Any, ...]:
    """The parameters of INSERT_JOB_SQL from the same `values` that `insert_job` takes."""
    return (
        values["id"],
        values["operation"],
        json.dumps(values["params"]),  # jsonb goes to asyncpg as text (SQLAlchemy's codec)
        values["request_key"],
        values["input_sha256"],
        values["input_format"],
        values["input_bytes"],
        values.get("request_id"),
        values["input_sha256"],
    )


def lock_blob(digest: str, *, shared: bool) -> Select[Any]:
    """A transaction-scoped advisory lock on one stored blob.

    Inserting a job that uses the blob takes it shared; deleting the blob because no job uses it
    takes it exclusive. So a clean-up can never delete a blob between another request's check
    that the file is there and the commit of the row that points at it.
    """
    lock = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    return select(lock(func.hashtextextended(literal(digest), 0)))


def select_job(job_id: uuid.UUID) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id)


# The live job of a request key ($1), run beside INSERT_JOB_SQL when that met a twin.
SELECT_LIVE_BY_REQUEST_KEY_SQL = """
SELECT * FROM imgproc_jobs WHERE request_key = $1 AND status <> 'failed'
"""


def select_job_using_blob(digest: str) -> Select[Any]:
    """Any one job whose input is the blob `digest` (to know whether it may be deleted)."""
    return select(jobs.c.id).where(jobs.c.input_sha256 == digest).limit(1)


# The worker's two per-job statements are plain SQL run on a psycopg connection (DriverConnection
# in imgproc.db): SQLAlchemy's execute path costs more CPU than the statement itself, and a worker
# runs them for every single job (figures: project/README.md, "How the per-job cost was cut").

CLAIM_SQL = """
UPDATE imgproc_jobs
   SET status = 'processing', attempts = attempts + 1, started_at = now(), updated_at = now(),
       -- taken back by the holder's own retry: its attempt ended in an unrecorded transient error
       transient_retries = transient_retries + (attempts = %(held)s)::int,
       retrying_since = CASE WHEN attempts = %(held)s THEN coalesce(retrying_since, now())
                             ELSE retrying_since END
 WHERE id = %(job_id)s
   AND (status = 'queued'
        OR (status = 'processing'
            AND (%(takeover)s OR started_at < now() - make_interval(secs => %(lease)s)
                 OR attempts = %(held)s)))
RETURNING *
"""

MARK_DONE_SQL = """
UPDATE imgproc_jobs
   SET status = 'done', output_sha256 = %(sha256)s, output_format = %(format)s,
       output_width = %(width)s, output_height = %(height)s, error = NULL,
       updated_at = now(), finished_at = now()
 WHERE id = %(job_id)s AND status = 'processing' AND attempts = %(attempt)s
RETURNING *
"""


# The worker's metrics read this at scrape time (imgproc_oldest_queued_job_age_seconds); the
# queued rows are found through the reconciler's partial index.
OLDEST_QUEUED_AGE_SQL = """
SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
  FROM imgproc_jobs WHERE status = 'queued'
"""


def queue_load() -> Select[int, int]:
    """How many jobs are queued, and seconds since the oldest of them was submitted (0: none).

    The API's load shedding reads this once a second (overload/shedding.py); the queued rows
    are found through the reconciler's partial index, and shedding itself keeps them few.
    """
    age = func.extract("epoch", func.now() - func.min(jobs.c.created_at))
    return select(func.count(), func.coalesce(age, 0)).where(jobs.c.status == JobStatus.QUEUED)


def claim(
    db: DriverConnection,
    job_id: uuid.UUID,
    *,
    lease_seconds: float,
    takeover: bool = False,
    held_attempt: int | None = None,
) -> JobRecord | None:
    """queued -> processing; the claimed row, or None if the job is not this worker's to run.

    A processing job is taken over when its lease ran out, or at once with `takeover` (the
    broker redelivered the message because the worker that held it died). `attempts` goes up
    either way, so the old holder, should it still be alive, can no longer finish the job.

    `held_attempt`: this message was sent by the worker that held that attempt and could not
    put the job back to `queued` (the database was down): it may take the job back at once.
    """
    params = {
        "job_id": job_id,
        "lease": float(lease_seconds),
        "takeover": takeover,
        "held": -1 if held_attempt is None else held_attempt,
    }
    return row_record(db.fetch_one(CLAIM_SQL, params))


def mark_done(
    db: DriverConnection,
    job_id: uuid.UUID,
    attempt: int,
    *,
    sha256: str,
    fmt: str,
    width: int,
    height: int,
) -> JobRecord | None:
    """processing -> done, only for the attempt that holds the job (else None: fenced off)."""
    params = {"sha256": sha256, "format": fmt, "width": width, "height": height}
    return row_record(db.fetch_one(MARK_DONE_SQL, {"job_id": job_id, "attempt": attempt, **params}))


def _owned(job_id: Any, attempt: Any) -> Any:
    return and_(
        jobs.c.id == job_id,
        jobs.c.status == JobStatus.PROCESSING,
        jobs.c.attempts == attempt,
    )


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


def release_for_retry(
    job_id: uuid.UUID, attempt: int, *, error: str, delay: float, transient: bool
) -> Executable:
    """processing -> queued for another try; the reconciler waits out the backoff.

    `transient`: the error was the infrastructure's (counted in `transient_retries`, and the
    time budget starts at the first one), not the job's.
    """
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "error": error,
        "updated_at": func.now(),
        "enqueued_at": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay),
    }
    if transient:
        values["transient_retries"] = jobs.c.transient_retries + 1
        values["retrying_since"] = func.coalesce(jobs.c.retrying_since, func.now())
    return update(jobs).where(_owned(job_id, attempt)).values(**values).returning(*jobs.c)


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
        .returning(
            jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.transient_retries, jobs.c.error
        )
    )
