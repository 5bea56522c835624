"""Dependencies the routes declare by type.

- `session: SessionDep`: an AsyncSession for this request, closed afterwards (rolled back
  unless committed);
- `cache: CacheDep`: the app's Redis cache (one client and connection pool per process);
- `settings: SettingsDep`: the app's settings (TTLs);
- `pricing: PricingDep`: the client of the pricing service (one connection pool per process);
- `publisher: PublisherDep`: the RabbitMQ publisher (a few threads, one connection each).

Tests and later labs swap them through `app.dependency_overrides[...]`.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.broker import Publisher
from app.cache import Cache
from app.config import Settings
from app.pricing import PricingClient


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a session of the app's engine; close it after the request."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        yield session


# `async def` even without an await: FastAPI runs a plain `def` dependency in its thread pool,
# a hop to another thread for nothing.
async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pricing(request: Request) -> PricingClient:
    pricing: PricingClient = request.app.state.pricing
    return pricing


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


SessionDep = Annotated[AsyncSession, Depends(get_session)]
CacheDep = Annotated[Cache, Depends(get_cache)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PricingDep = Annotated[PricingClient, Depends(get_pricing)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
