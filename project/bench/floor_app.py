"""The floor of the submit path, for `make bench-project`: upload, save, enqueue, nothing else.

What a minimal FastAPI + Celery image service does with an upload (the seed's naive shape):
FastAPI parses the multipart body into an `UploadFile`, the bytes are written under a random
name (no fsync, no validation, no hashing, no database, no de-duplication, no cache, no rate
limit, no metrics, no logging), and a Celery task carrying that name is sent with Celery's stock
configuration to the same Redis broker. Our API does all of that plus its guarantees; the bench
compares the two side by side in one run.

Run: `uvicorn --factory floor_app:create_app` with project/bench on PYTHONPATH and the service's
environment (REDIS_URL, REDIS_PREFIX, CELERY_QUEUE, DATA_DIR). Nothing consumes its queue: the
bench deletes the run's Redis prefix at the end.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated

from celery import Celery
from fastapi import FastAPI, Form, UploadFile


def create_app() -> FastAPI:
    prefix = os.environ.get("REDIS_PREFIX", "")
    queue = os.environ.get("CELERY_QUEUE", "imgproc") + ".floor"
    out_dir = Path(os.environ["DATA_DIR"]) / "floor"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Stock Celery, stock kombu transport; only the key prefix keeps it inside the bench's run.
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

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
