"""Celery tasks: thin wrappers over `processor.run_job` and `reconciler.reconcile`.

The message carries only the job id; the image is read from content-addressed storage.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from imgproc.celery_app import PROCESS_TASK, RECONCILE_TASK
from imgproc.config import Settings
from imgproc.jobs.processor import context_for, run_job
from imgproc.jobs.queue import JobQueue
from imgproc.jobs.reconciler import reconcile


def register_tasks(app: Celery, settings: Settings) -> None:
    """Define the tasks on `app`, bound to `settings`."""

    queue = JobQueue(app, settings.celery_queue)

    @app.task(name=PROCESS_TASK, bind=True, max_retries=None)
    def process_job(self: Task[Any, Any], job_id: str, held_attempt: int | None = None) -> str:
        # kombu marks a message it gave back (its worker died holding it) as redelivered.
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        outcome = run_job(
            context_for(settings),
            job_id,
            redelivered=redelivered,
            held_attempt=held_attempt,
            retries=self.request.retries,
        )
        if outcome.retry_in is not None:
            # A new message with a countdown; this one is acked. attempts live in PostgreSQL.
            held = {} if outcome.held_attempt is None else {"held_attempt": outcome.held_attempt}
            raise self.retry(countdown=outcome.retry_in, kwargs=held)
        return outcome.name

    @app.task(name=RECONCILE_TASK)
    def reconcile_jobs() -> dict[str, int]:
        return reconcile(context_for(settings), queue.publish)
