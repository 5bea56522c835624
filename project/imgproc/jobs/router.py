"""HTTP routes of jobs: three operations in, status and result out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool

from imgproc.config import Settings
from imgproc.deps import (
    CacheDep,
    MetricsDep,
    QueueDep,
    RequestIdDep,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from imgproc.errors import validation_summary
from imgproc.images.exceptions import ParameterError, UploadTooLarge
from imgproc.images.schemas import (
    MAX_OFFSET,
    MAX_SIDE,
    CropParams,
    GrayscaleParams,
    Operation,
    OperationParams,
    ResampleFilter,
    ResizeParams,
)
from imgproc.jobs import service
from imgproc.jobs.queue import JobQueue
from imgproc.jobs.schemas import ErrorResponse, SubmitResponse, TaskStatus
from imgproc.jobs.status_cache import StatusCache
from imgproc.metrics.api import ApiMetrics
from imgproc.storage.backend import BlobStore

router = APIRouter(tags=["jobs"])

_DESCRIPTIONS = {
    400: "the multipart body could not be parsed",
    404: "no task with this id",
    409: "the task is not done yet; poll its status",
    410: "the task failed; its status says why",
    413: "the upload is larger than MAX_UPLOAD_BYTES",
    415: "the upload is not a JPEG, PNG or WebP image",
    422: "a broken or too large image, or parameters that do not fit it",
    500: "the task is done but its result file is gone and could not be re-run",
    503: "a backing service (database, disk, broker) cannot serve now; retry after Retry-After",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (one JSON shape for all)."""
    return {
        code: {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS[code],
            **({"headers": _RETRY_AFTER} if code == 503 else {}),
        }
        for code in codes
    }


# What a client does next with the `task_id` (OpenAPI links; schemathesis follows them).
_NEXT = {
    "status": {
        "operationId": "task_status_task_status__task_id__get",
        "parameters": {"task_id": "$response.body#/task_id"},
    },
    "result": {
        "operationId": "task_result_result__task_id__get",
        "parameters": {"task_id": "$response.body#/task_id"},
    },
}
_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SubmitResponse,
        "description": "an identical earlier request's task",
        "links": _NEXT,
    },
    202: {"description": "accepted: the task is queued", "links": _NEXT},
    **_errors(400, 413, 415, 422, 503),
}
UploadDep = Annotated[UploadFile, File(description="a JPEG, PNG or WebP image")]
# The bounds the parameter models enforce (images/schemas.py), shown in the schema; values
# outside them get the API's own 422 `invalid_parameters` answer.
_SIDE = {"minimum": 1, "maximum": MAX_SIDE}
_OFFSET = {"minimum": 0, "maximum": MAX_OFFSET}


def _params(model: type[BaseModel], **fields: Any) -> OperationParams:
    try:
        params = model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        summary, details = validation_summary(exc.errors())
        raise ParameterError(f"bad parameters: {summary}", details=details) from exc
    assert isinstance(params, CropParams | GrayscaleParams | ResizeParams)
    return params


@dataclass(frozen=True)
class Submission:
    """What every upload route needs, gathered by FastAPI from the dependencies."""

    request: Request
    response: Response
    request_id: str | None
    session: AsyncSession
    cache: StatusCache
    store: BlobStore
    queue: JobQueue
    metrics: ApiMetrics
    settings: Settings


async def submission(
    request: Request,
    response: Response,
    request_id: RequestIdDep,
    session: SessionDep,
    cache: CacheDep,
    store: StoreDep,
    queue: QueueDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Submission:
    # A function, not `Depends(Submission)`: FastAPI would call the class in its thread pool
    # (see deps.py).
    return Submission(
        request, response, request_id, session, cache, store, queue, metrics, settings
    )


SubmissionDep = Annotated[Submission, Depends(submission)]


async def _submit(
    ctx: Submission, operation: Operation, params: OperationParams, file: UploadFile
) -> SubmitResponse:
    limit = ctx.settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise UploadTooLarge(f"the upload is {file.size} bytes; the limit is {limit}")
    data = await file.read(limit + 1)
    submitted = await service.submit_job(
        session=ctx.session,
        cache=ctx.cache,
        store=ctx.store,
        queue=ctx.queue,
        metrics=ctx.metrics,
        settings=ctx.settings,
        operation=operation,
        params=params,
        data=data,
        request_id=ctx.request_id,
    )
    status = submitted.status
    ctx.request.state.job_id = str(status.task_id)  # for the request's log line (middleware.py)
    ctx.metrics.jobs_submitted.labels(
        operation=operation.value, deduplicated=str(submitted.cache_hit).lower()
    ).inc()
    # 202: accepted for processing. An identical earlier request answers at once with 200.
    ctx.response.status_code = 200 if submitted.cache_hit else 202
    ctx.response.headers["X-Cache"] = "HIT" if submitted.cache_hit else "MISS"
    # What `url_for` gives for the two routes below, without its search through every route
    # (two lookups were 2 % of the submit path's CPU).
    base = str(ctx.request.base_url).rstrip("/")
    status_url = base + STATUS_PATH.format(task_id=status.task_id)
    ctx.response.headers["Location"] = status_url
    return SubmitResponse(
        task_id=status.task_id,
        status=status.status,
        operation=status.operation,
        params=status.params,
        cache_hit=submitted.cache_hit,
        status_url=status_url,
        result_url=base + RESULT_PATH.format(task_id=status.task_id),
    )


@router.post("/crop", status_code=202, responses=_SUBMIT_RESPONSES)
async def crop(
    ctx: SubmissionDep,
    file: UploadDep,
    left: Annotated[
        int, Form(description="x of the left edge, upright image", json_schema_extra=_OFFSET)
    ],
    top: Annotated[
        int, Form(description="y of the top edge, upright image", json_schema_extra=_OFFSET)
    ],
    width: Annotated[int, Form(description="box width", json_schema_extra=_SIDE)],
    height: Annotated[int, Form(description="box height", json_schema_extra=_SIDE)],
) -> SubmitResponse:
    """Cut a box out of the image (the box must lie inside it)."""
    params = _params(CropParams, left=left, top=top, width=width, height=height)
    return await _submit(ctx, Operation.CROP, params, file)


@router.post("/grayscale", status_code=202, responses=_SUBMIT_RESPONSES)
async def grayscale(
    ctx: SubmissionDep,
    file: UploadDep,
) -> SubmitResponse:
    """Convert the image to grayscale (alpha is kept)."""
    params = _params(GrayscaleParams)
    return await _submit(ctx, Operation.GRAYSCALE, params, file)


@router.post("/resize", status_code=202, responses=_SUBMIT_RESPONSES)
async def resize(
    ctx: SubmissionDep,
    file: UploadDep,
    width: Annotated[
        int | None,
        Form(description="target width (width, height or both)", json_schema_extra=_SIDE),
    ] = None,
    height: Annotated[
        int | None, Form(description="target height", json_schema_extra=_SIDE)
    ] = None,
    keep_aspect: Annotated[bool, Form(description="fit inside width x height")] = True,
    filter: Annotated[ResampleFilter, Form(description="resampling filter")] = (
        ResampleFilter.LANCZOS
    ),
) -> SubmitResponse:
    """Resize to a width and/or height, keeping the aspect ratio unless told not to."""
    params = _params(
        ResizeParams, width=width, height=height, keep_aspect=keep_aspect, filter=filter
    )
    return await _submit(ctx, Operation.RESIZE, params, file)


STATUS_PATH = "/task-status/{task_id}"
RESULT_PATH = "/result/{task_id}"


@router.get(STATUS_PATH, name="task_status", responses=_errors(404, 422, 503))
async def task_status(session: SessionDep, cache: CacheDep, task_id: uuid.UUID) -> TaskStatus:
    """Status, operation, parameters, timestamps, attempts and the error of a failed job."""
    return await service.get_status(session=session, cache=cache, job_id=task_id)


@router.get(
    RESULT_PATH,
    name="task_result",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
        **_errors(404, 409, 410, 422, 500, 503),
    },
)
async def task_result(
    session: SessionDep, cache: CacheDep, store: StoreDep, queue: QueueDep, task_id: uuid.UUID
) -> Response:
    """The processed image: 409 while it is not ready, 410 if the job failed."""
    result = await service.get_result(
        session=session, cache=cache, store=store, queue=queue, job_id=task_id
    )
    # A task's result never changes once it exists.
    headers = {"Cache-Control": "public, max-age=31536000, immutable"}
    if result.stream is not None:
        # From the object store, chunk by chunk through a thread (boto3 reads block).
        stream = result.stream
        headers["Content-Length"] = str(stream.size)
        headers["Content-Disposition"] = f'inline; filename="{result.filename}"'
        return StreamingResponse(
            iterate_in_threadpool(stream.chunks),
            media_type=result.media_type,
            headers=headers,
            background=BackgroundTask(stream.close),
        )
    assert result.path is not None
    return FileResponse(
        result.path,
        media_type=result.media_type,
        filename=result.filename,
        content_disposition_type="inline",
        headers=headers,
    )
