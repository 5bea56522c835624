"""Submit a job, read its status, find its result: the API's side of a job's life.

Every function takes exactly what it touches, as keyword arguments (the routes get them from
`deps.py`). Submitting is five steps, each its own function:

1. `identify`: refuse an empty or too large upload, and compute the request's identity (the
   bytes' sha256 with the operation and its normalized parameters);
2. `find_twin`: an identical request already has a live job -> answer with it (that request
   passed step 3 with the same bytes and parameters, so a repeat skips it);
3. `check_upload`: refuse what no worker may see (not an image, cut off, too many pixels,
   parameters that do not fit the image);
4. `record_job`: store the upload (fsynced) and INSERT its row (or meet the twin that won);
5. `enqueue`: send the job id to the workers (a failure is left to the reconciler).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]  # (no stubs)
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from imgproc.config import Settings
from imgproc.images.exceptions import UnsupportedImage, UploadTooLarge
from imgproc.images.schemas import Operation, OperationParams, canonical_params
from imgproc.images.service import EXTENSIONS, MEDIA_TYPES, ImageInfo, check_params, inspect_image
from imgproc.jobs import repository as repo
from imgproc.jobs.exceptions import JobFailed, JobNotFound, JobNotReady, ResultMissing
from imgproc.jobs.models import FINAL_STATUSES, JobRecord, JobStatus
from imgproc.jobs.queue import JobQueue
from imgproc.jobs.schemas import TaskStatus
from imgproc.jobs.status_cache import StatusCache
from imgproc.metrics.api import ApiMetrics
from imgproc.storage.backend import BlobStore, BlobStream
from imgproc.storage.service import sha256_hex

log = structlog.get_logger(__name__)

# Hashing and header parsing of a few hundred KB take well under a millisecond; above this the
# work moves to a thread so one big upload does not stall every other request.
_INLINE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Submitted:
    status: TaskStatus
    cache_hit: bool


@dataclass(frozen=True)
class Upload:
    """An upload that passed every check, with its identity."""

    data: bytes
    sha256: str
    info: ImageInfo
    request_key: str


def request_key(input_sha256: str, operation: Operation, params: OperationParams) -> str:
    """The identity of a request: same bytes, operation and normalized params -> same key."""
    return sha256_hex(f"{input_sha256}\n{operation}\n{canonical_params(params)}".encode())


async def identify(
    data: bytes, *, operation: Operation, params: OperationParams, settings: Settings
) -> tuple[str, str]:
    """Refuse an empty or too large upload; return (its sha256, the request key)."""
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"the upload is {len(data)} bytes; the limit is {settings.max_upload_bytes}"
        )
    if not data:
        raise UnsupportedImage("the upload is empty")
    if len(data) > _INLINE_LIMIT:
        digest = await anyio.to_thread.run_sync(sha256_hex, data)
    else:
        digest = sha256_hex(data)
    return digest, request_key(digest, operation, params)


async def check_upload(
    data: bytes, *, digest: str, key: str, params: OperationParams, settings: Settings
) -> Upload:
    """Validate the image and its parameters before anything is stored."""
    if len(data) > _INLINE_LIMIT:
        inspect = functools.partial(inspect_image, data, max_pixels=settings.max_pixels)
        info = await anyio.to_thread.run_sync(inspect)
    else:
        info = inspect_image(data, max_pixels=settings.max_pixels)
    check_params(info, params, max_pixels=settings.max_pixels)
    return Upload(data, digest, info, key)


async def find_twin(*, session: AsyncSession, cache: StatusCache, key: str) -> TaskStatus | None:
    """The live job of an identical earlier request, if the cache knows one."""
    job_id = await cache.job_for_request(key)
    if job_id is None:
        return None
    existing = await _status_or_none(session=session, cache=cache, job_id=job_id)
    return existing if existing is not None and existing.status != JobStatus.FAILED else None


async def record_job(
    *,
    session: AsyncSession,
    store: BlobStore,
    upload: Upload,
    operation: Operation,
    params: OperationParams,
    request_id: str | None,
) -> tuple[TaskStatus, bool]:
    """Store the upload and commit its job row; (status, True) for a new job.

    (twin's status, False) when an identical live job committed first. If this request fails,
    a blob it wrote that no row points at is deleted again: nothing is left half-written.
    """
    _, created = await anyio.to_thread.run_sync(store.put, upload.data, upload.sha256)
    values = {
        "id": uuid.uuid4(),
        "operation": operation.value,
        "params": params.model_dump(mode="json"),
        "status": JobStatus.QUEUED.value,
        "request_key": upload.request_key,
        "input_sha256": upload.sha256,
        "input_format": upload.info.format,
        "input_bytes": len(upload.data),
        "request_id": request_id,
    }
    try:
        # Two tries: the twin that blocked the INSERT may fail in between, freeing the key.
        for _ in range(2):
            async with driver_transaction(session) as connection:
                job = await insert_using_blob(
                    connection=connection, store=store, values=values, data=upload.data
                )
                if job is not None:
                    return TaskStatus.from_record(job), True
                live = repo.SELECT_LIVE_BY_REQUEST_KEY_SQL
                twin = repo.row_record(await connection.fetchrow(live, upload.request_key))
            if twin is not None:
                return TaskStatus.from_record(twin), False
        raise RuntimeError(f"request key {upload.request_key} stayed in conflict without a job")
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                await session.rollback()  # whatever state the failure left it in
            await forget_unreferenced(session=session, store=store, digest=upload.sha256)
        raise


async def enqueue(*, queue: JobQueue, metrics: ApiMetrics, job_id: uuid.UUID) -> None:
    """Send the job to the workers; if the broker fails, the reconciler sends it later."""
    try:
        await queue.send(str(job_id))
    except Exception as exc:  # the row is committed: the reconciler sends it later
        metrics.enqueue_failures.inc()
        log.warning("enqueue_failed", job_id=str(job_id), error=str(exc))


async def submit_job(
    *,
    session: AsyncSession,
    cache: StatusCache,
    store: BlobStore,
    queue: JobQueue,
    metrics: ApiMetrics,
    settings: Settings,
    operation: Operation,
    params: OperationParams,
    data: bytes,
    request_id: str | None,
) -> Submitted:
    """Validate, store, record and enqueue one request (or answer with its identical twin)."""
    digest, key = await identify(data, operation=operation, params=params, settings=settings)
    twin = await find_twin(session=session, cache=cache, key=key)
    if twin is not None:
        return Submitted(twin, cache_hit=True)
    upload = await check_upload(data, digest=digest, key=key, params=params, settings=settings)
    status, created = await record_job(
        session=session,
        store=store,
        upload=upload,
        operation=operation,
        params=params,
        request_id=request_id,
    )
    await cache.remember_new(upload.request_key, status)
    if created:
        # (No log line of its own: the request's access line names the job; see the router.)
        await enqueue(queue=queue, metrics=metrics, job_id=status.task_id)
    return Submitted(status, cache_hit=not created)


@contextlib.asynccontextmanager
async def driver_transaction(session: AsyncSession) -> AsyncIterator[asyncpg.Connection]:
    """A transaction run on the session's own asyncpg connection, past SQLAlchemy.

    For the upload's INSERT, the one statement every new job runs: SQLAlchemy's execute path
    (greenlet switches, its transaction and result objects) costs more CPU than the statement
    (project/README.md, "How the submit path's cost was cut"). The connection stays the pool's:
    SQLAlchemy's own transaction on it is never started, so its commit and its rollback at
    check-in do nothing. A lost connection is handled as SQLAlchemy's execute path handles it
    (see below), so one dead connection costs one 503, not one per pooled connection.
    """
    connection = await session.connection()
    driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
    try:
        async with driver.transaction():
            yield driver
    except BaseException as exc:
        if driver.is_closed() and not isinstance(exc, asyncio.CancelledError):
            # Closed is SQLAlchemy's own test of a lost asyncpg connection. A statement through
            # its execute path meets it and does what SQLAlchemy does then: it replaces every
            # pooled connection opened before this one (a restarted server killed them all).
            with contextlib.suppress(Exception):
                await connection.exec_driver_sql("SELECT 1")
        if not connection.invalidated and isinstance(exc, _BROKEN_CONNECTION):
            with contextlib.suppress(Exception):
                await connection.invalidate()  # never handed out again
        raise


# What says the connection itself is gone (an SQL error leaves it usable; asyncpg rolled back).
_BROKEN_CONNECTION = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # its protocol state is broken (see unavailable.py)
    OSError,
    TimeoutError,
    asyncio.CancelledError,  # cancelled mid-statement: the protocol state is unknown
)


async def insert_using_blob(
    *, connection: asyncpg.Connection, store: BlobStore, values: dict[str, Any], data: bytes
) -> JobRecord | None:
    """INSERT the job row (or None on a live twin), its input blob guaranteed to be there.

    Runs inside the caller's transaction (`driver_transaction`). The shared blob lock keeps a
    failed twin's clean-up (`forget_unreferenced`) from deleting the file between the check
    below and this transaction's commit; if a clean-up already deleted it, the bytes are written
    again.
    """
    digest = values["input_sha256"]
    # The lock and the INSERT in one statement; the file is checked after it, still inside the
    # transaction and under the lock, so the clean-up cannot run before the commit either way.
    job = repo.row_record(
        await connection.fetchrow(repo.INSERT_JOB_SQL, *repo.insert_job_params(values))
    )
    # A stat of a local file: cheaper inline than a thread hop while holding a connection.
    # An object store's HEAD is a network round trip: a thread, not the event loop.
    if store.local_path(digest) is not None:
        present = store.has(digest)
    else:
        present = await anyio.to_thread.run_sync(store.has, digest)
    if not present:
        await anyio.to_thread.run_sync(store.put, data, digest)
    return job


async def forget_unreferenced(*, session: AsyncSession, store: BlobStore, digest: str) -> None:
    """Delete a blob this request wrote if no row points at it (nothing half-written stays)."""
    used: Any = None
    try:
        async with session.begin():
            await session.execute(repo.lock_blob(digest, shared=False))
            used = await session.scalar(repo.select_job_using_blob(digest))
            if used is None:
                await anyio.to_thread.run_sync(store.delete, digest)
    except Exception:
        if used is None:
            # The database did not answer, which is most likely why this request failed too:
            # delete rather than leave an orphan. (A twin upload committing through a database
            # that answers it but not us could lose its input; it then fails, clearly.)
            await anyio.to_thread.run_sync(store.delete, digest)


async def _status_or_none(
    *, session: AsyncSession, cache: StatusCache, job_id: uuid.UUID
) -> TaskStatus | None:
    status = await cache.status(job_id)
    if status is not None:
        return status
    status = await _load_status(session, job_id)
    if status is not None:
        await cache.fill(status)
    return status


async def _fresh_status(
    *, session: AsyncSession, cache: StatusCache, job_id: uuid.UUID
) -> TaskStatus | None:
    """The status from PostgreSQL itself (and into the cache, overwriting what it held)."""
    status = await _load_status(session, job_id)
    if status is not None:
        await cache.overwrite(status)
    return status


async def _load_status(session: AsyncSession, job_id: uuid.UUID) -> TaskStatus | None:
    async with session.begin():
        job = repo.record(await session.execute(repo.select_job(job_id)))
    return None if job is None else TaskStatus.from_record(job)


async def get_status(*, session: AsyncSession, cache: StatusCache, job_id: uuid.UUID) -> TaskStatus:
    status = await _status_or_none(session=session, cache=cache, job_id=job_id)
    if status is None:
        raise JobNotFound(f"no task with id {job_id}")
    return status


@dataclass(frozen=True)
class ResultFile:
    """A result to send: a local file (`path`), or an open object-store stream (`stream`)."""

    media_type: str
    filename: str
    path: Path | None = None
    stream: BlobStream | None = None


async def get_result(
    *,
    session: AsyncSession,
    cache: StatusCache,
    store: BlobStore,
    queue: JobQueue,
    job_id: uuid.UUID,
) -> ResultFile:
    status = await get_status(session=session, cache=cache, job_id=job_id)
    if status.status not in FINAL_STATUSES:
        # A cached "not done yet" may be stale: the worker's status write is best-effort (a
        # Redis timeout skips it). Before answering 409, ask the source of truth.
        status = await _fresh_status(session=session, cache=cache, job_id=job_id) or status
    if status.status == JobStatus.FAILED:
        raise JobFailed(f"task {job_id} failed: {status.error}", details={"error": status.error})
    if status.status != JobStatus.DONE or status.output is None:
        raise JobNotReady(
            f"task {job_id} is {status.status.value}; poll {status.status_url}",
            details={"status": status.status.value},
        )
    fmt = status.output.format
    media_type, filename = MEDIA_TYPES[fmt], f"{job_id}.{EXTENSIONS[fmt]}"
    path = store.local_path(status.output.sha256)
    if path is not None:
        if not path.exists():
            await _recompute(session=session, cache=cache, queue=queue, job_id=job_id)
        return ResultFile(media_type, filename, path=path)
    # An object store: open the object (the GET doubles as the existence check) and stream it
    # through the API, so clients need no access to the store (see project/README.md).
    try:
        stream = await anyio.to_thread.run_sync(store.open, status.output.sha256)
    except FileNotFoundError:
        await _recompute(session=session, cache=cache, queue=queue, job_id=job_id)
        raise  # (_recompute always raises)
    return ResultFile(media_type, filename, stream=stream)


async def _recompute(
    *, session: AsyncSession, cache: StatusCache, queue: JobQueue, job_id: uuid.UUID
) -> None:
    """A done job lost its output (a crash before the file reached the disk): run it again.

    Outputs are not fsynced because they can be recomputed from the fsynced input; this is where
    that happens. The job goes back to `queued` (guarded: only from `done`) and is re-sent.
    """
    async with session.begin():
        job = repo.record(await session.execute(repo.requeue_lost_result(job_id)))
    if job is None:
        raise ResultMissing(f"task {job_id} has no result file and cannot be re-run now")
    status = TaskStatus.from_record(job)
    await cache.overwrite(status)
    try:
        await queue.send(str(job_id))
    except Exception as exc:  # the reconciler sends it later
        log.warning("enqueue_failed", job_id=str(job_id), error=str(exc))
    log.warning("result_lost_requeued", job_id=str(job_id))
    raise JobNotReady(
        f"the result of task {job_id} was lost and is being computed again; poll "
        f"{status.status_url}",
        details={"status": status.status.value},
    )
