"""Response models of the job routes, and the status document that is cached."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from imgproc.images.service import MEDIA_TYPES
from imgproc.jobs.models import JobRecord, JobStatus


class OutputInfo(BaseModel):
    format: str
    media_type: str
    width: int
    height: int
    sha256: str


class TaskStatus(BaseModel):
    """What GET /task-status answers (and what the status cache holds)."""

    task_id: uuid.UUID
    status: JobStatus
    operation: str
    params: dict[str, Any]
    attempts: int = Field(description="how many times a worker started this job")
    transient_retries: int = Field(
        default=0,
        description="how many of those attempts ended in a transient error (database, disk)"
        " and were retried",
    )
    error: str | None = Field(description="why the job failed (or the last transient error)")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status_url: str
    result_url: str
    output: OutputInfo | None

    @classmethod
    def from_record(cls, job: JobRecord) -> TaskStatus:
        output = None
        sha, fmt, width, height = (
            job.output_sha256,
            job.output_format,
            job.output_width,
            job.output_height,
        )
        if (
            job.status == JobStatus.DONE
            and sha
            and fmt
            and width is not None
            and height is not None
        ):
            output = OutputInfo(
                format=fmt, media_type=MEDIA_TYPES[fmt], width=width, height=height, sha256=sha
            )
        return cls(
            task_id=job.id,
            status=job.status,
            operation=job.operation,
            params=job.params,
            attempts=job.attempts,
            transient_retries=job.transient_retries,
            error=job.error,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            status_url=f"/task-status/{job.id}",
            result_url=f"/result/{job.id}",
            output=output,
        )


class SubmitResponse(BaseModel):
    """What POST /crop, /grayscale and /resize answer."""

    task_id: uuid.UUID
    status: JobStatus
    operation: str
    params: dict[str, Any]
    cache_hit: bool = Field(
        description="true when an identical earlier request answered (no new processing)"
    )
    status_url: str
    result_url: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint."""

    error: ErrorDetail
    request_id: str | None
