"""Send a job to the workers: the one way the API and the worker publish a job id.

The message carries only the job id (the image stays in storage, the state in PostgreSQL).
Publishing blocks on the broker: async code calls it through a thread.
"""

from __future__ import annotations

from celery import Celery

from imgproc.celery_app import PROCESS_TASK, create_celery
from imgproc.config import Settings


class JobQueue:
    def __init__(self, celery: Celery, queue: str) -> None:
        self.celery = celery
        self.queue = queue

    @classmethod
    def from_settings(cls, settings: Settings) -> JobQueue:
        return cls(create_celery(settings), settings.celery_queue)

    def publish(self, job_id: str) -> None:
        self.celery.send_task(PROCESS_TASK, args=[job_id], queue=self.queue)

    def check(self, timeout: float) -> None:
        """Raise if the broker does not answer within `timeout` seconds."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=int(timeout))

    def close(self) -> None:
        self.celery.close()
