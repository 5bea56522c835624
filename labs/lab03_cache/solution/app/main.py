"""Build the FastAPI app: `create_app()` for tests and tools, `app` for the server."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api.routes import health, items
from app.cache import make_cache
from app.config import Settings, get_settings
from app.db import make_engine, make_session_factory
from app.errors import install_error_handlers


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return a new app on DATABASE_URL (migrated with Alembic), cached in REDIS_URL."""
    settings = settings or get_settings()
    engine = make_engine(settings)
    cache = make_cache(
        settings.redis_url,
        settings.redis_prefix,
        enabled=settings.cache_enabled,
        lock_ms=settings.cache_lock_ms,
        retry_seconds=settings.cache_retry_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()  # close the pooled connections on shutdown
        cache.client.close()

    # FastAPIOffline: /docs served from files in the wheel, so it works without internet.
    app = FastAPIOffline(title=settings.app_name, version="3.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.session_factory = make_session_factory(engine)
    app.state.cache = cache
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(items.router)
    return app


app = create_app()
