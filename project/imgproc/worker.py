"""The Celery app the worker and beat run: `celery -A imgproc.worker worker` / `... beat`.

Settings come from the environment once, at import; the process serves its metrics after start.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

from imgproc.celery_app import create_celery
from imgproc.config import get_settings
from imgproc.images.memory import keep_freed_memory
from imgproc.jobs.processor import close_context
from imgproc.jobs.tasks import register_tasks
from imgproc.logging import configure_logging
from imgproc.metrics.worker import start_worker_metrics_server

settings = get_settings()
configure_logging(json=settings.log_json, level=settings.log_level)
# Before the pool forks, so that every pool process keeps its image memory (see images/memory.py).
KEEPS_IMAGE_MEMORY = settings.keep_image_memory and keep_freed_memory()
# Celery's own "Task ... received" / "... succeeded" lines repeat what job_done says (with
# less: no job id, no request id) and cost a formatted JSON line each per job.
# Celery decides at start-up whether to build them, so this must run before the worker starts.
for _name in ("celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(_name).setLevel(logging.WARNING)
app = create_celery(settings)
register_tasks(app, settings)


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    start_worker_metrics_server(settings)
    structlog.get_logger(__name__).info(
        "worker_ready",
        queue=settings.celery_queue,
        storage=settings.effective_storage_url,
        keeps_image_memory=KEEPS_IMAGE_MEMORY,
    )


@worker_process_shutdown.connect  # a prefork pool process
@worker_shutdown.connect  # the main process (where a solo pool runs its jobs)
def _on_shutdown(**_: Any) -> None:
    close_context()
