"""Submit a job, read its status, find its result: the API's side of a job's life."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from imgproc.deps import AppState
from imgproc.images.exceptions import UnsupportedImage, UploadTooLarge
from imgproc.images.schemas import Operation, OperationParams, canonical_params
from imgproc.images.service import MEDIA_TYPES, ImageInfo, check_params, inspect_image
from imgproc.jobs import repository as repo
from imgproc.jobs.exceptions import JobFailed, JobNotFound, JobNotReady, ResultMissing
from imgproc.jobs.models import FINAL_STATUSES, JobStatus
from imgproc.jobs.schemas import TaskStatus
from imgproc.storage.service import sha256_hex

log = structlog.get_logger(__name__)

# Hashing and header parsing of a few hundred KB take well under a millisecond; above this the
# work moves to a thread so one big upload does not stall every other request.
_INLINE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Submitted:
    status: TaskStatus
    cache_hit: bool


def request_key(input_sha256: str, operation: Operation, params: OperationParams) -> str:
    """The identity of a request: same bytes, operation and normalized params -> same key."""
    return sha256_hex(f"{input_sha256}\n{operation}\n{canonical_params(params)}".encode())


def _inspect(data: bytes, max_pixels: int) -> tuple[str, ImageInfo]:
    return sha256_hex(data), inspect_image(data, max_pixels=max_pixels)


async def submit_job(
    state: AppState,
    *,
    operation: Operation,
    params: OperationParams,
    data: bytes,
    request_id: str | None,
) -> Submitted:
    """Validate, store, record and enqueue one request (or answer with its identical twin)."""
    settings = state.settings
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"the upload is {len(data)} bytes; the limit is {settings.max_upload_bytes}"
        )
    if not data:
        raise UnsupportedImage("the upload is empty")
    if len(data) > _INLINE_LIMIT:
        digest, info = await anyio.to_thread.run_sync(_inspect, data, settings.max_pixels)
    else:
        digest, info = _inspect(data, settings.max_pixels)
    check_params(info, params, max_pixels=settings.max_pixels)
    key = request_key(digest, operation, params)

    cached_id = await state.cache.get("dedup", state.cache.keys.dedup(key))
    if cached_id is not None:
        existing = await _status_or_none(state, uuid.UUID(cached_id.decode()))
        if existing is not None and existing.status != JobStatus.FAILED:
            return Submitted(existing, cache_hit=True)

    _, created = await anyio.to_thread.run_sync(state.store.put, data, digest)
    values = {
        "id": uuid.uuid4(),
        "operation": operation.value,
        "params": params.model_dump(mode="json"),
        "status": JobStatus.QUEUED.value,
        "request_key": key,
        "input_sha256": digest,
        "input_format": info.format,
        "input_bytes": len(data),
        "request_id": request_id,
    }
    try:
        row = None
        # Two tries: the twin that blocked the INSERT may fail in between, freeing the key.
        for _ in range(2):
            async with state.sessions.begin() as session:
                row = await insert_using_blob(state, session, values, data)
                if row is not None:
                    break
                # An identical live job won the race: answer with it.
                twin_row = (await session.execute(repo.select_live_by_request_key(key))).first()
            if twin_row is not None:
                twin = TaskStatus.from_row(twin_row._mapping)
                await _remember(state, key, twin)
                return Submitted(twin, cache_hit=True)
        if row is None:
            raise RuntimeError(f"request key {key} stayed in conflict without a live job")
    except BaseException:
        if created:
            await forget_unreferenced(state, digest)
        raise
    status = TaskStatus.from_row(row._mapping)
    await _remember(state, key, status)
    try:
        await anyio.to_thread.run_sync(state.publisher.publish, str(status.task_id))
    except Exception as exc:  # the row is committed: the reconciler sends it later
        state.metrics.enqueue_failures.inc()
        log.warning("enqueue_failed", job_id=str(status.task_id), error=str(exc))
    log.info("job_submitted", job_id=str(status.task_id), operation=operation.value)
    return Submitted(status, cache_hit=False)


async def _remember(state: AppState, key: str, status: TaskStatus) -> None:
    settings = state.settings
    await state.cache.set(
        state.cache.keys.dedup(key), str(status.task_id), ttl=settings.final_ttl_seconds
    )
    await state.cache.set(
        state.cache.keys.status(str(status.task_id)),
        status.model_dump_json(),
        ttl=settings.status_ttl_seconds,
        only_if_missing=True,
    )


async def insert_using_blob(
    state: AppState, session: AsyncSession, values: dict[str, Any], data: bytes
) -> Any:
    """INSERT the job row (or None on a live twin), its input blob guaranteed to be there.

    The shared blob lock keeps a failed twin's clean-up (`forget_unreferenced`) from deleting the
    file between the check below and this transaction's commit; if a clean-up already deleted it,
    the bytes are written again.
    """
    digest = values["input_sha256"]
    await session.execute(repo.lock_blob(digest, shared=True))
    # A stat of a local file: cheaper inline than a thread hop while holding a connection.
    if not state.store.has(digest):
        await anyio.to_thread.run_sync(state.store.put, data, digest)
    return (await session.execute(repo.insert_job(values))).first()


async def forget_unreferenced(state: AppState, digest: str) -> None:
    """Delete a blob this request wrote if no row points at it (nothing half-written stays)."""
    used: Any = None
    try:
        async with state.sessions.begin() as session:
            await session.execute(repo.lock_blob(digest, shared=False))
            used = await session.scalar(
                select(repo.jobs.c.id).where(repo.jobs.c.input_sha256 == digest).limit(1)
            )
            if used is None:
                await anyio.to_thread.run_sync(state.store.delete, digest)
    except Exception:
        if used is None:
            # The database did not answer, which is most likely why this request failed too:
            # delete rather than leave an orphan. (A twin upload committing through a database
            # that answers it but not us could lose its input; it then fails, clearly.)
            await anyio.to_thread.run_sync(state.store.delete, digest)


async def _status_or_none(state: AppState, job_id: uuid.UUID) -> TaskStatus | None:
    raw = await state.cache.get("status", state.cache.keys.status(str(job_id)))
    if raw is not None:
        return TaskStatus.model_validate_json(raw)
    async with state.sessions() as session:
        row = (await session.execute(repo.select_job(job_id))).first()
    if row is None:
        return None
    status = TaskStatus.from_row(row._mapping)
    ttl = (
        state.settings.final_ttl_seconds
        if status.status in FINAL_STATUSES
        else state.settings.status_ttl_seconds
    )
    # NX: a worker may have written a newer status since we read the row; never overwrite it.
    await state.cache.set(
        state.cache.keys.status(str(job_id)),
        status.model_dump_json(),
        ttl=ttl,
        only_if_missing=True,
    )
    return status


async def get_status(state: AppState, job_id: uuid.UUID) -> TaskStatus:
    status = await _status_or_none(state, job_id)
    if status is None:
        raise JobNotFound(f"no task with id {job_id}")
    return status


@dataclass(frozen=True)
class ResultFile:
    path: Path
    media_type: str
    filename: str


async def get_result(state: AppState, job_id: uuid.UUID) -> ResultFile:
    status = await get_status(state, job_id)
    if status.status == JobStatus.FAILED:
        raise JobFailed(f"task {job_id} failed: {status.error}", details={"error": status.error})
    if status.status != JobStatus.DONE or status.output is None:
        raise JobNotReady(
            f"task {job_id} is {status.status.value}; poll {status.status_url}",
            details={"status": status.status.value},
        )
    ext = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
    media_type = MEDIA_TYPES[status.output.format]
    path = state.store.path_for(status.output.sha256)
    if not path.exists():
        await _recompute(state, job_id)
    return ResultFile(
        path=path,
        media_type=media_type,
        filename=f"{job_id}.{ext[media_type]}",
    )


async def _recompute(state: AppState, job_id: uuid.UUID) -> None:
    """A done job lost its output (a crash before the file reached the disk): run it again.

    Outputs are not fsynced because they can be recomputed from the fsynced input; this is where
    that happens. The job goes back to `queued` (guarded: only from `done`) and is re-sent.
    """
    async with state.sessions.begin() as session:
        row = (await session.execute(repo.requeue_lost_result(job_id))).first()
    if row is None:
        raise ResultMissing(f"task {job_id} has no result file and cannot be re-run now")
    status = TaskStatus.from_row(row._mapping)
    await state.cache.set(
        state.cache.keys.status(str(job_id)),
        status.model_dump_json(),
        ttl=state.settings.status_ttl_seconds,
    )
    try:
        await anyio.to_thread.run_sync(state.publisher.publish, str(job_id))
    except Exception as exc:  # the reconciler sends it later
        log.warning("enqueue_failed", job_id=str(job_id), error=str(exc))
    log.warning("result_lost_requeued", job_id=str(job_id))
    raise JobNotReady(
        f"the result of task {job_id} was lost and is being computed again; poll "
        f"{status.status_url}",
        details={"status": status.status.value},
    )
