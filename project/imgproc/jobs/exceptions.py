"""Errors about a job id (see imgproc.errors for the whole hierarchy)."""

from __future__ import annotations

from imgproc.errors import ServiceError


class JobNotFound(ServiceError):
    status_code = 404
    code = "task_not_found"


class JobNotReady(ServiceError):
    status_code = 409
    code = "task_not_ready"


class JobFailed(ServiceError):
    status_code = 410
    code = "task_failed"


class ResultMissing(ServiceError):
    """A done job's file is gone and the job could not be re-run."""

    status_code = 500
    code = "result_missing"
