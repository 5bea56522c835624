"""Settings of the pricing service (environment first, then `.env`)."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults for every request; one item's scenario (see `state.py`) overrides them."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001
    log_level: str = "warning"
    latency_ms: int = Field(default=0, ge=0, description="delay before every answer")
    failure_rate: float = Field(default=0.0, ge=0, le=1, description="share of 503 answers")
    # A held request waits at most this long for a release, so a forgotten hold never
    # leaves a connection open forever.
    hold_timeout_s: float = Field(default=30.0, gt=0)


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
