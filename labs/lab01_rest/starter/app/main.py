"""Build the FastAPI app: `create_app()` for tests and tools, `app` for the server."""

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api.routes import health, items
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.repository import ItemStore


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return a new app with its own empty item store."""
    settings = settings or get_settings()
    # FastAPIOffline: /docs served from files in the wheel, so it works without internet.
    app = FastAPIOffline(title=settings.app_name, version="1.0.0")
    app.state.repo = ItemStore()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(items.router)
    return app


app = create_app()
