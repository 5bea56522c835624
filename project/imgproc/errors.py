"""The service's exception hierarchy; every HTTP error leaves as one JSON shape.

    ServiceError                      code, HTTP status, message
    +-- images.exceptions.ImageError  bad upload: 413 / 415 / 422 (and a job's permanent failure)
    +-- images.exceptions.ParameterError   422, bad operation parameters
    +-- jobs.exceptions.JobNotFound        404
    +-- jobs.exceptions.JobNotReady        409
    +-- jobs.exceptions.JobFailed          410
    +-- jobs.exceptions.ResultMissing      500, done but the file is gone and cannot be re-run

The shape: {"error": {"code": "...", "message": "...", "details": ...}, "request_id": "..."}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ServiceError(Exception):
    """An error with a stable machine-readable code and the HTTP status it maps to."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def error_body(
    code: str, message: str, *, details: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    """Return the one JSON error shape used by every endpoint."""
    return {
        "error": {"code": code, "message": message, "details": details},
        "request_id": request_id,
    }


def validation_summary(
    errors: Sequence[Mapping[str, Any]], *, located: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """Flatten pydantic's errors into ("field: problem; ...", [{"loc": [...], "msg": ...}]).

    `located`: each error's first `loc` entry says where the value came from (body, query,
    path); the summary leaves it out unless nothing else names the field.
    """
    details = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")} for err in errors
    ]

    def field(loc: list[str]) -> str:
        if located:
            return ".".join(loc[1:]) or (loc[0] if loc else "request")
        return ".".join(loc) or "parameters"

    return "; ".join(f"{field(d['loc'])}: {d['msg']}" for d in details), details
