"""Settings shared by every app in the course (labs and capstone).

Each app defines its own subclass with the fields it needs; the URLs of the three backing
services live here once so that `.env`, `docker-compose.yml` and the test fixtures agree.
Values come from the environment first, then from a `.env` file in the working directory.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Defaults match docker-compose.yml (and a local install with trust auth accepts them too).
DEFAULT_DATABASE_URL = "postgresql://postgres:postgres@127.0.0.1:5432/highload"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class ServiceSettings(BaseSettings):
    """URLs of PostgreSQL, Redis and RabbitMQ, plus the namespace a run may use in them."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    amqp_url: str = DEFAULT_AMQP_URL
    # Every Redis key and RabbitMQ queue an app creates starts with this, so that test runs
    # (and several students on one shared server) never see each other's data.
    redis_prefix: str = Field(default="hl:", description="prefix for every Redis key")
    queue_prefix: str = Field(default="hl.", description="prefix for every RabbitMQ queue")


def sqlalchemy_url(url: str, driver: str = "psycopg") -> str:
    """Return `url` with the SQLAlchemy driver set (`postgresql+psycopg://...`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    base = scheme.split("+", 1)[0]
    if base in {"postgres", "postgresql"}:
        base = "postgresql"
    return f"{base}+{driver}://{rest}"


def plain_postgres_url(url: str) -> str:
    """Return `url` without a SQLAlchemy driver suffix, as libpq and psycopg expect it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"
