"""Build the Flask app: `create_app()` for tests and tools, `app` for the server."""

from flask import Flask

from app import openapi
from app.api.deps import REPO_KEY
from app.api.routes import health, items
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.repository import ItemStore


def create_app(settings: Settings | None = None) -> Flask:
    """Return a new app with its own empty item store."""
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["APP_NAME"] = settings.app_name
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the schema's field order
    app.extensions[REPO_KEY] = ItemStore()
    install_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(items.bp)
    app.register_blueprint(openapi.bp)
    return app


app = create_app()
