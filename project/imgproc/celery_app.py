"""The Celery configuration shared by the API (which only sends) and the worker.

Redis is the broker; every key kombu creates carries REDIS_PREFIX (`global_keyprefix`), so a
test run or a second deployment on the same Redis never sees this one's queue. There is no
result backend: PostgreSQL holds every job's state.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from imgproc.broker import TRANSPORT
from imgproc.config import Settings

PROCESS_TASK = "imgproc.process_job"
RECONCILE_TASK = "imgproc.reconcile"


def control_queue(settings: Settings) -> str:
    """The reconciler's own queue, so a backlog of jobs never delays (or expires) it."""
    return f"{settings.celery_queue}.control"


def create_celery(settings: Settings) -> Celery:
    app = Celery("imgproc", set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        # kombu's Redis transport, minus a client construction per message (see broker.py).
        broker_transport=TRANSPORT,
        broker_transport_options={
            "global_keyprefix": settings.redis_prefix,
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # Publishing gives up quickly: the job row is already committed and the reconciler
        # sends it later, so a slow broker must not hold the HTTP request.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # A worker consumes both (Redis BRPOP rotates between them).
        task_queues=[Queue(settings.celery_queue), Queue(control_queue(settings))],
        task_default_queue=settings.celery_queue,
        task_create_missing_queues=False,
        task_routes={
            PROCESS_TASK: {"queue": settings.celery_queue},
            RECONCILE_TASK: {"queue": control_queue(settings)},
        },
        # At-least-once: ack after the work, give the message back if the process dies,
        # take one message at a time so a dead worker strands at most one job.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        # No broadcast traffic unless Flower watches (CELERY_MONITORING): then task events
        # (Flower's task list) and remote control (its worker list: `inspect` over pidbox).
        worker_enable_remote_control=settings.celery_monitoring,
        worker_send_task_events=settings.celery_monitoring,
        task_send_sent_event=settings.celery_monitoring,
        worker_hijack_root_logger=False,
        beat_schedule={
            "reconcile": {
                "task": RECONCILE_TASK,
                "schedule": settings.reconcile_interval_seconds,
                # A reconcile message that waited a whole interval is superseded by the next.
                "options": {
                    "queue": control_queue(settings),
                    "expires": settings.reconcile_interval_seconds,
                },
            }
        },
    )
    return app
