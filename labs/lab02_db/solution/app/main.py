"""Build the FastAPI app: `create_app()` for tests and tools, `app` for the server."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api.routes import health, items
from app.config import Settings, get_settings
from app.db import make_engine, make_session_factory
from app.errors import install_error_handlers


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return a new app that stores its items in DATABASE_URL (migrated with Alembic)."""
    settings = settings or get_settings()
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()  # close the pooled connections on shutdown

    # FastAPIOffline: /docs served from files in the wheel, so it works without internet.
    app = FastAPIOffline(title=settings.app_name, version="2.0.0", lifespan=lifespan)
    app.state.session_factory = make_session_factory(engine)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(items.router)
    return app


app = create_app()
