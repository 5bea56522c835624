"""Response models of the job routes, and the status document that is cached."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from imgproc.images.service import MEDIA_TYPES
from imgproc.jobs.models import JobStatus


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
    error: str | None = Field(description="why the job failed (or the last transient error)")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status_url: str
    result_url: str
    output: OutputInfo | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> TaskStatus:
        output = None
        if row["status"] == JobStatus.DONE and row["output_sha256"]:
            output = OutputInfo(
                format=row["output_format"],
                media_type=MEDIA_TYPES[row["output_format"]],
                width=row["output_width"],
                height=row["output_height"],
                sha256=row["output_sha256"],
            )
        return cls(
            task_id=row["id"],
            status=JobStatus(row["status"]),
            operation=row["operation"],
            params=row["params"],
            attempts=row["attempts"],
            error=row["error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            status_url=f"/task-status/{row['id']}",
            result_url=f"/result/{row['id']}",
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
