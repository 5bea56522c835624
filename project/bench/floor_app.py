"""The floors of the submit path, for `make bench-project`: upload, save, enqueue, and no more.

The floor: what a minimal FastAPI + Celery image service does with an upload (the seed's naive
shape). FastAPI parses the multipart body into an `UploadFile`, the bytes are written under a
random name (no fsync, no validation, no hashing, no database, no de-duplication, no cache, no
rate limit, no metrics, no logging), and a Celery task carrying that name is sent with Celery's
stock configuration to the same Redis broker.

With `FLOOR_GUARANTEES=1`, the floor of a service that keeps the promises the capstone makes
(project/README.md, "Reliability guarantees"), each done the cheapest way there is, and nothing
else: the size limit, the name computed from the bytes (sha256, never the client's), the image
checked against the limits before any worker could see it (the same `inspect_image` the API
calls), the file fsynced and renamed into place before the answer, and the job's row committed
(one INSERT on a plain asyncpg connection, autocommit: a single round trip) before the task is
sent, the cheapest way we know: as our API sends it (`JobQueue.send`, one asynchronous LPUSH of
a message Celery built once; kombu's `send_task` costs 0.15 ms more). No de-duplication, no
cache, no metrics, no logging, no overload protection: those are ours alone. Any service that
keeps the promises does at least this per upload, so its throughput bounds ours from above.

Run: `uvicorn --factory floor_app:create_app` with project/bench on PYTHONPATH and the service's
environment (REDIS_URL, REDIS_PREFIX, CELERY_QUEUE, DATA_DIR; DATABASE_URL with the guarantees).
Nothing consumes its queue: the bench deletes the run's Redis prefix at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import asyncpg  # type: ignore[import-untyped]  # (no stubs)
from celery import Celery
from fastapi import FastAPI, Form, HTTPException, UploadFile

from imgproc.config import get_settings
from imgproc.images.exceptions import ImageError
from imgproc.images.service import inspect_image
from imgproc.jobs.queue import JobQueue
from shared.settings import plain_postgres_url

_INSERT = """
INSERT INTO imgproc_jobs (id, operation, params, status, request_key, input_sha256,
                          input_format, input_bytes)
VALUES ($1, 'resize', $2, 'queued', $3, $4, $5, $6)
"""


def create_app() -> FastAPI:
    prefix = os.environ.get("REDIS_PREFIX", "")
    guarantees = os.environ.get("FLOOR_GUARANTEES") == "1"
    queue = os.environ.get("CELERY_QUEUE", "imgproc") + (".promise" if guarantees else ".floor")
    out_dir = Path(os.environ["DATA_DIR"]) / ("promise" if guarantees else "floor")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not guarantees:
        # Stock Celery, stock kombu transport; only the key prefix keeps it inside the run.
        celery = Celery("floor", broker=os.environ["REDIS_URL"], set_as_current=False)
        celery.conf.broker_transport_options = {"global_keyprefix": prefix}
        app = FastAPI()

        @app.post("/resize", status_code=202)
        async def resize(
            file: UploadFile,
            width: Annotated[int | None, Form()] = None,
            height: Annotated[int | None, Form()] = None,
        ) -> dict[str, str]:
            task_id = str(uuid.uuid4())
            path = out_dir / f"{task_id}.bin"
            path.write_bytes(await file.read())
            celery.send_task("floor.resize", args=[str(path), width, height], queue=queue)
            return {"task_id": task_id, "status": "queued"}

    else:
        max_bytes = int(os.environ.get("MAX_UPLOAD_BYTES", 20 * 1024 * 1024))
        max_pixels = int(os.environ.get("MAX_PIXELS", 40_000_000))
        pool: Any = None  # an asyncpg.Pool once started
        # Its own queue (nothing consumes it), in the service's Redis under the run's prefix.
        jobs = JobQueue.from_settings(get_settings().model_copy(update={"celery_queue": queue}))

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            nonlocal pool
            pool = await asyncpg.create_pool(
                plain_postgres_url(os.environ["DATABASE_URL"]), min_size=4, max_size=16
            )
            yield
            await pool.close()
            await jobs.aclose()
            jobs.close()

        app = FastAPI(lifespan=lifespan)

        def store(data: bytes, path: Path) -> None:
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fd = os.open(out_dir, os.O_RDONLY)  # the new name must be durable too
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        @app.post("/resize", status_code=202)
        async def resize_kept(
            file: UploadFile,
            width: Annotated[int | None, Form()] = None,
            height: Annotated[int | None, Form()] = None,
        ) -> dict[str, str]:
            data = await file.read()
            if not data or len(data) > max_bytes:
                raise HTTPException(413, "empty or too large")
            digest = hashlib.sha256(data).hexdigest()
            try:
                info = inspect_image(data, max_pixels=max_pixels)
            except ImageError as exc:
                raise HTTPException(exc.status_code, exc.message) from exc
            await anyio.to_thread.run_sync(store, data, out_dir / digest)
            job_id = uuid.uuid4()
            params = json.dumps({"width": width, "height": height})
            assert pool is not None
            await pool.execute(_INSERT, job_id, params, digest, digest, info.format, len(data))
            await jobs.send(str(job_id))
            return {"task_id": str(job_id), "status": "queued"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
