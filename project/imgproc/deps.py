"""What a request may use, one `Annotated` dependency each; built once per app by `main.py`.

Routes name exactly what they need (`SessionDep`, `CacheDep`, `StoreDep`, `QueueDep`, ...) and
pass it on to the service functions as keyword arguments, so a function's signature says what it
touches, and a test can swap one piece through `app.dependency_overrides`.

Every dependency is `async def`, although none of them awaits anything: FastAPI runs a plain
`def` dependency in its thread pool, and a thread hop costs more CPU than the whole lookup (a
`Submission` of nine plain dependencies was most of the submit path's cost; project/README.md,
"How the submit path's cost was cut").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from imgproc.config import Settings
from imgproc.jobs.queue import JobQueue
from imgproc.jobs.status_cache import StatusCache
from imgproc.metrics.api import ApiMetrics
from imgproc.storage.backend import BlobStore


@dataclass(frozen=True)
class Resources:
    """The long-lived objects of one app (connections, pools), closed at shutdown."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: StatusCache
    store: BlobStore
    queue: JobQueue
    metrics: ApiMetrics

    async def close(self) -> None:
        await self.cache.close()
        await self.engine.dispose()
        await self.queue.aclose()
        self.queue.close()

    def attach(self, app: FastAPI) -> None:
        app.state.resources = self


def resources_of(app: FastAPI) -> Resources:
    resources: Resources = app.state.resources
    return resources


def _resources(request: Request) -> Resources:
    return resources_of(request.app)


async def get_settings(request: Request) -> Settings:
    return _resources(request).settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; it takes a connection only when a statement runs."""
    async with _resources(request).sessions() as session:
        yield session


async def get_cache(request: Request) -> StatusCache:
    return _resources(request).cache


async def get_store(request: Request) -> BlobStore:
    return _resources(request).store


async def get_queue(request: Request) -> JobQueue:
    return _resources(request).queue


async def get_metrics(request: Request) -> ApiMetrics:
    return _resources(request).metrics


async def get_request_id(request: Request) -> str | None:
    value: str | None = getattr(request.state, "request_id", None)
    return value


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
CacheDep = Annotated[StatusCache, Depends(get_cache)]
StoreDep = Annotated[BlobStore, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
