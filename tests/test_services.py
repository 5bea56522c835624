"""Service checks and per-run namespaces, against the real services."""

import psycopg
import pytest
import redis

from shared.services import ServiceUnavailable, require
from shared.settings import ServiceSettings, sqlalchemy_url
from shared.testing.namespaces import delete_redis_prefix, temporary_database


def test_a_service_that_is_down_is_named_with_the_command_to_start_it():
    settings = ServiceSettings(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ServiceUnavailable) as info:
        require("Redis", settings)
    message = str(info.value)
    assert "redis://127.0.0.1:1/0" in message
    assert "docker compose up -d redis" in message and "redis-server" in message


def test_temporary_database_is_created_and_dropped(run_id: str):
    server = require("PostgreSQL")
    with temporary_database(server, run_id, "_probe") as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (f"hl_test_{run_id}_probe",)
    with psycopg.connect(server.rsplit("/", 1)[0] + "/postgres") as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (f"hl_test_{run_id}_probe",)
        ).fetchone()
    assert row is None


def test_redis_prefix_cleanup_deletes_only_that_prefix(redis_url: str, redis_prefix: str):
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}a", 1)
    client.set(f"{redis_prefix}b", 2)
    client.set(f"{redis_prefix}x-other", 3, ex=60)
    other = f"hl_test_other_{redis_prefix}"
    client.set(other, 1, ex=60)
    assert delete_redis_prefix(redis_url, redis_prefix) == 3
    assert client.exists(other) == 1
    client.delete(other)


def test_sqlalchemy_url_sets_the_driver():
    assert sqlalchemy_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("postgres://u@h/db", "asyncpg") == "postgresql+asyncpg://u@h/db"
