"""The job table, the single source of truth for every job's state, and `JobRecord`, one row.

`Job` declares the table (for Alembic and SQLAlchemy Core); `JobRecord` is a row as the code
passes it around, whichever driver read it (asyncpg through SQLAlchemy in the API, psycopg in
the worker): `JobRecord.from_mapping(row)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from imgproc.db import Base


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


FINAL_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED})


class Job(Base):
    __tablename__ = "imgproc_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'processing', 'done', 'failed')", name="status_known"
        ),
        CheckConstraint("operation IN ('crop', 'grayscale', 'resize')", name="operation_known"),
        # Identical requests share one live job; a failed one may be tried again.
        Index(
            "uq_imgproc_jobs_request_key_live",
            "request_key",
            unique=True,
            postgresql_where=text("status <> 'failed'"),
        ),
        # The reconciler's scan: unfinished jobs by the time they last made progress.
        Index(
            "ix_imgproc_jobs_unfinished",
            "status",
            "enqueued_at",
            postgresql_where=text("status IN ('queued', 'processing')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    operation: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    request_key: Mapped[str] = mapped_column(String(64))
    input_sha256: Mapped[str] = mapped_column(String(64))
    input_format: Mapped[str] = mapped_column(String(8))
    input_bytes: Mapped[int] = mapped_column(Integer)
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    output_format: Mapped[str | None] = mapped_column(String(8))
    output_width: Mapped[int | None] = mapped_column(Integer)
    output_height: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Retries after a transient error (database, disk, network): they do not count against
    # MAX_ATTEMPTS but against a time budget that starts at the first of them.
    transient_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retrying_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of `imgproc_jobs`."""

    id: uuid.UUID
    operation: str
    params: dict[str, Any]
    status: JobStatus
    request_key: str
    input_sha256: str
    input_format: str
    input_bytes: int
    output_sha256: str | None
    output_format: str | None
    output_width: int | None
    output_height: int | None
    attempts: int
    transient_retries: int
    retrying_since: datetime | None
    error: str | None
    request_id: str | None
    created_at: datetime
    updated_at: datetime
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def crashes(self) -> int:
        """Attempts that did not end in a transient error (the ones MAX_ATTEMPTS limits)."""
        return self.attempts - self.transient_retries

    @classmethod
    def from_mapping(cls, row: Mapping[Any, Any]) -> JobRecord:
        values = {name: row[name] for name in _FIELDS}
        values["status"] = JobStatus(values["status"])
        return cls(**values)


_FIELDS = tuple(f.name for f in fields(JobRecord))
