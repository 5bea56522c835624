"""The floor of the worker's job, for `make bench-project`: our promises kept, and no more.

A Celery worker with exactly our worker's configuration (the service's `create_celery`: late
acknowledgement, prefetch 1, the same queues and transport) whose job task does only what any
worker keeping the capstone's promises must do per job, each the cheapest way there is:

- claim the row, fenced: one autocommit UPDATE that moves `queued` to `processing`, raises
  `attempts` and returns what the job needs (a prepared statement on plain psycopg);
- read the input, by the hash the row holds (never a client's name);
- run the same `process_image` as our worker, with the same limits, encoder settings and
  allocator tuning;
- store the output atomically (a temporary file renamed into place; not fsynced, as ours);
- record `done` only for the attempt it holds (one autocommit UPDATE, nothing returned);
- keep the status cache truthful: one DEL of the job's cached status, sent without waiting.

No takeover of expired leases, no retries, no failure paths (the bench's jobs all succeed), no
metrics, no log line, no status document: those are ours alone. Its per-job cost beyond the
no-op task (noop_worker.py) bounds from below what ours can reach.

Run as `celery -A floor_worker worker` with project/bench on PYTHONPATH and the service's
environment; it consumes the queue CELERY_QUEUE names, filled by an API of its own.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg

from imgproc.cache.service import SyncCache
from imgproc.celery_app import PROCESS_TASK, create_celery
from imgproc.config import get_settings
from imgproc.images.memory import keep_freed_memory
from imgproc.images.schemas import Operation, parse_params
from imgproc.images.service import process_image
from imgproc.jobs.processor import encode_options
from imgproc.jobs.status_cache import StatusKeys
from imgproc.storage.service import ContentStore
from shared.settings import plain_postgres_url

CLAIM = """
UPDATE imgproc_jobs SET status = 'processing', attempts = attempts + 1, started_at = now(),
       updated_at = now()
 WHERE id = %s AND status = 'queued'
RETURNING attempts, operation, params, input_sha256
"""
DONE = """
UPDATE imgproc_jobs SET status = 'done', output_sha256 = %s, output_format = %s,
       output_width = %s, output_height = %s, updated_at = now(), finished_at = now()
 WHERE id = %s AND status = 'processing' AND attempts = %s
"""
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

settings = get_settings()
keep_freed_memory()  # as our worker and the plain loop do (images/memory.py)
app = create_celery(settings)
store = ContentStore(settings.data_dir)  # paths only: its `put` checks more than needed
options = encode_options(settings)
keys = StatusKeys(settings.redis_prefix)
state: dict[str, Any] = {}  # this process's connections, opened at its first job
known_dirs: set[Path] = set()


@app.task(name=PROCESS_TASK)
def process_job(job_id: str) -> None:
    if "db" not in state:
        state["db"] = psycopg.connect(plain_postgres_url(settings.database_url), autocommit=True)
        state["cache"] = SyncCache(settings.effective_cache_url, timeout=2)
    db: psycopg.Connection[Any] = state["db"]
    uid = uuid.UUID(job_id)
    row = db.execute(CLAIM, (uid,), prepare=True).fetchone()
    if row is None:  # done already, or another worker's
        return
    attempt, operation, params, input_sha256 = row
    data = store.path_for(input_sha256).read_bytes()
    op = Operation(operation)
    result = process_image(
        data, op, parse_params(op, params), max_pixels=settings.max_pixels, options=options
    )
    digest = hashlib.sha256(result.data).hexdigest()
    path = store.path_for(digest)
    if path.parent not in known_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        known_dirs.add(path.parent)
    # The write alone: no check for an existing copy first (ContentStore.put stats it).
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    fd = os.open(tmp, _CREATE, 0o600)
    try:
        os.write(fd, result.data)  # (a few hundred KB at most: one write)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    done = (digest, result.format, result.width, result.height, uid, attempt)
    db.execute(DONE, done, prepare=True)
    state["cache"].send(("DEL", keys.status(job_id)))
