"""The floors of the submit path, for `make bench-project`: upload, save, enqueue, and no more.

The floor: what a minimal FastAPI + Celery image service does with an upload (the seed's naive
shape). FastAPI parses the multipart body into an `UploadFile`, the bytes are written under a
random name (no fsync, no validation, no hashing, no database, no de-duplication, no cache, no
rate limit, no metrics, no logging), and a Celery task carrying that name is sent with Celery's
stock configuration to the same Redis broker.

With `FLOOR_GUARANTEES=1`, the floor of a service that keeps every submit-side promise of the
capstone's guarantees table (project/README.md, "Reliability guarantees"), each done the cheapest
way there is, and nothing else:
- the size limit; the file named by its sha256, never by the client; the image checked against
  the limits before any worker could see it (the same `inspect_image` the API calls);
- the file fsynced and renamed into place (and its directory fsynced) before the answer;
- the job's row committed before the answer and before the task is sent, with an identical live
  request's job shared instead of a second one (the unique index: `ON CONFLICT DO NOTHING`, then
  the twin's row);
- nothing left behind by a failed request (a blob it wrote that no row uses is deleted), which is
  safe against an identical upload racing it only if the INSERT holds the blob's shared lock
  until its commit and checks the file under it: so BEGIN, the INSERT with the lock (our API's
  own statement, `INSERT_JOB_SQL`), a stat, COMMIT, on a plain asyncpg connection;
- the task sent as our API sends it (`JobQueue.send`: one asynchronous LPUSH of a message Celery
  built once; kombu's `send_task` costs 0.15 ms more).
No status cache, twin lookup in Redis, metrics, logging, request ids or overload protection:
those are ours alone. Any service that keeps these promises does at least this work per upload,
so its throughput bounds ours from above. (Until 2026-12-01 this floor committed one autocommit
INSERT and had no de-duplication or clean-up: it kept the first two points only.)

With `FLOOR_FEATURES=1` as well, the same plus what our API does on every upload beyond the
guarantees, each the cheapest way (what the submit path's targets must leave room for):
- a request id (the client's `X-Request-ID` if well-formed, else a new one), echoed back;
- an identical request looked up in Redis before the image is checked (one GET: it is what lets
  a repeat skip the check, the cache hit the issue's `p50 <= 2 ms` target is about), and the
  new job's dedup entry and status written to Redis after the commit, in the same pipelined
  round trip as the message (our API sends them in two);
- the queue's depth for load shedding, read from the job table at most once a second;
- Prometheus metrics: requests by route and status, a latency histogram, jobs submitted;
- one JSON access line per request on stderr.
No FastAPI dependencies, SQLAlchemy, structlog or instrumentator: those are our layers.

Run: `uvicorn --factory floor_app:create_app` with project/bench on PYTHONPATH and the service's
environment (REDIS_URL, REDIS_PREFIX, CELERY_QUEUE, DATA_DIR; DATABASE_URL with the guarantees).
Nothing consumes its queue: the bench deletes the run's Redis prefix at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import asyncpg  # type: ignore[import-untyped]  # (no stubs)
import redis.asyncio as aioredis
from celery import Celery
from fastapi import FastAPI, Form, HTTPException, Request, Response, UploadFile
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app

from imgproc.config import get_settings
from imgproc.images.exceptions import ImageError
from imgproc.images.service import inspect_image
from imgproc.jobs import repository as repo
from imgproc.jobs.queue import JobQueue
from shared.settings import plain_postgres_url

# A failed request's clean-up, as the API's (jobs.service.forget_unreferenced).
_LOCK_EXCLUSIVE = "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))"
_USED = "SELECT id FROM imgproc_jobs WHERE input_sha256 = $1 LIMIT 1"
_QUEUED = "SELECT count(*) FROM imgproc_jobs WHERE status = 'queued'"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def create_app() -> FastAPI:
    prefix = os.environ.get("REDIS_PREFIX", "")
    guarantees = os.environ.get("FLOOR_GUARANTEES") == "1"
    features = guarantees and os.environ.get("FLOOR_FEATURES") == "1"
    queue = os.environ.get("CELERY_QUEUE", "imgproc") + (".promise" if guarantees else ".floor")
    queue += ".features" if features else ""
    out_dir = Path(os.environ["DATA_DIR"]) / (
        ("features" if features else "promise") if guarantees else "floor"
    )
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
        settings = get_settings()
        jobs = JobQueue.from_settings(settings.model_copy(update={"celery_queue": queue}))
        cache = aioredis.Redis.from_url(settings.redis_url)
        queue_key = f"{prefix}{queue}"  # the queue's list in the broker (as JobQueue.send)
        registry = CollectorRegistry()
        requests_total = Counter(
            "floor_requests_total", "by route and status", ["handler", "status"], registry=registry
        )
        latency = Histogram("floor_request_seconds", "by route", ["handler"], registry=registry)
        submitted = Counter("floor_jobs_submitted_total", "by dedup", ["dedup"], registry=registry)
        load = {"queued": 0, "read_at": -1.0}

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            nonlocal pool
            pool = await asyncpg.create_pool(
                plain_postgres_url(os.environ["DATABASE_URL"]), min_size=4, max_size=16
            )
            yield
            await pool.close()
            await cache.aclose()  # type: ignore[attr-defined]  # stubs predate aclose
            await jobs.aclose()
            jobs.close()

        app = FastAPI(lifespan=lifespan)
        if features:
            app.mount("/metrics", make_asgi_app(registry))

        def store(data: bytes, path: Path) -> bool:
            """Write the blob unless it is there; True if this call wrote it."""
            if path.exists():
                return False
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
            return True

        async def forget(connection: Any, digest: str, path: Path) -> None:
            """Delete the blob a failed request wrote, unless a row uses it (under the lock)."""
            async with connection.transaction():
                await connection.execute(_LOCK_EXCLUSIVE, digest)
                if await connection.fetchval(_USED, digest) is None:
                    path.unlink(missing_ok=True)

        async def shed() -> bool:
            """Whether the queue is past its bound, from the table at most once a second."""
            now = time.monotonic()
            if now - load["read_at"] >= 1.0:
                load["read_at"] = now
                load["queued"] = await pool.fetchval(_QUEUED)
            return load["queued"] >= 1_000_000

        async def submit(
            response: Response, data: bytes, width: int | None, height: int | None
        ) -> dict[str, str]:
            if not data or len(data) > max_bytes:
                raise HTTPException(413, "empty or too large")
            digest = hashlib.sha256(data).hexdigest()
            # The request's identity: the bytes with the parameters (a 64-character column).
            key = hashlib.sha256(f"{digest}\nresize\n{width}x{height}".encode()).hexdigest()
            if features:
                if await shed():
                    raise HTTPException(503, "the queue is too long")
                twin = await cache.get(f"{prefix}floor:dedup:{key}")
                if twin is not None:
                    cached = await cache.get(f"{prefix}floor:status:{twin.decode()}")
                    if cached is not None:
                        response.status_code = 200
                        submitted.labels(dedup="true").inc()
                        return {"task_id": twin.decode(), "status": json.loads(cached)["status"]}
            try:
                info = inspect_image(data, max_pixels=max_pixels)
            except ImageError as exc:
                raise HTTPException(exc.status_code, exc.message) from exc
            path = out_dir / digest
            created = await anyio.to_thread.run_sync(store, data, path)
            params = json.dumps({"width": width, "height": height})
            job_id = uuid.uuid4()
            # INSERT_JOB_SQL's parameters (no request id; the last one keys the blob's lock).
            values = (job_id, "resize", params, key, digest, info.format, len(data), None, digest)
            assert pool is not None
            async with pool.acquire() as connection:
                try:
                    async with connection.transaction():
                        row = await connection.fetchrow(repo.INSERT_JOB_SQL, *values)
                        if not path.exists():  # a failed twin's clean-up deleted it: write again
                            await anyio.to_thread.run_sync(store, data, path)
                        if row is None:
                            row = await connection.fetchrow(
                                repo.SELECT_LIVE_BY_REQUEST_KEY_SQL, key
                            )
                except BaseException:
                    if created:
                        await forget(connection, digest, path)
                    raise
            if row is None:
                raise HTTPException(503, "the identical job failed meanwhile; retry")
            task_id, status = str(row["id"]), row["status"]
            created_job = row["id"] == job_id
            if features:
                # The cache entries and the message in one round trip (the cache and the broker
                # are one Redis here, as in the default deployment).
                status_doc = json.dumps({"task_id": task_id, "status": status, "op": "resize"})
                async with cache.pipeline(transaction=False) as pipe:
                    pipe.set(f"{prefix}floor:dedup:{key}", task_id, ex=86400)
                    pipe.set(f"{prefix}floor:status:{task_id}", status_doc, ex=3600, nx=True)
                    if created_job:
                        pipe.lpush(queue_key, jobs.message(task_id))
                    await pipe.execute()
                submitted.labels(dedup=str(not created_job).lower()).inc()
            elif created_job:
                await jobs.send(task_id)
            if not created_job:
                response.status_code = 200  # an identical live request's job
                return {"task_id": task_id, "status": status}
            return {"task_id": task_id, "status": "queued"}

        @app.post("/resize", status_code=202)
        async def resize_kept(
            request: Request,
            response: Response,
            file: UploadFile,
            width: Annotated[int | None, Form()] = None,
            height: Annotated[int | None, Form()] = None,
        ) -> dict[str, str]:
            if not features:
                return await submit(response, await file.read(), width, height)
            started = time.perf_counter()
            given = None
            for name, value in request.scope["headers"]:
                if name == b"x-request-id":
                    given = value.decode("latin-1")
            request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
            response.headers["x-request-id"] = request_id
            code, answer = 500, None
            try:
                answer = await submit(response, await file.read(), width, height)
                code = response.status_code or 202
                return answer
            except HTTPException as exc:
                code = exc.status_code
                raise
            finally:
                took = time.perf_counter() - started
                requests_total.labels(handler="/resize", status=str(code)).inc()
                latency.labels(handler="/resize").observe(took)
                line = {"event": "request", "request_id": request_id, "method": "POST"}
                line |= {"path": "/resize", "status": code, "ms": round(took * 1000, 2)}
                if answer is not None:
                    line["job_id"] = answer["task_id"]
                sys.stderr.write(json.dumps(line) + "\n")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
