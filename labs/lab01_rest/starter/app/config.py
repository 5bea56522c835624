"""Settings of the items service (environment first, then `.env`)."""

from functools import lru_cache

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """What this app reads from the environment; the service URLs come from the base class."""

    app_name: str = "Items API (lab 1)"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "warning"


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
