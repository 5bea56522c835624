"""Everything a request needs, built once per app, reached through `StateDep`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from imgproc.cache.service import AsyncCache
from imgproc.celery_app import PROCESS_TASK
from imgproc.config import Settings
from imgproc.metrics.api import ApiMetrics
from imgproc.storage.service import ContentStore


@dataclass
class Publisher:
    """Send a job id to the worker queue (blocking: call it from a thread)."""

    celery: Celery
    queue: str

    def publish(self, job_id: str) -> None:
        self.celery.send_task(PROCESS_TASK, args=[job_id], queue=self.queue)


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: AsyncCache
    store: ContentStore
    publisher: Publisher
    metrics: ApiMetrics


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.imgproc
    return state


def get_request_id(request: Request) -> str | None:
    value: str | None = getattr(request.state, "request_id", None)
    return value


StateDep = Annotated[AppState, Depends(get_state)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
