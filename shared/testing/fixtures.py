"""Pytest fixtures that give a test run its own namespace in each real service.

Loaded for every test run (see `addopts` in pyproject.toml). A service that is down fails the
test that needs it with a message naming the URL and how to start it; it never skips silently.

- `run_id`: short random id of this run, part of every name below.
- `database_url`: a fresh PostgreSQL database `hl_test_<run_id>`, dropped at the end.
- `redis_url`, `redis_prefix`: the Redis server and a key prefix whose keys are deleted at the end.
- `amqp_url`, `queue_names`: the broker and a factory of run-scoped queue names, deleted at the end.
- `db`, `redis_client`: direct connections for tests that look behind a server's back.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import redis

from shared.services import ServiceUnavailable, require
from shared.settings import ServiceSettings
from shared.testing.namespaces import (
    QueueNames,
    delete_redis_prefix,
    new_run_id,
    temporary_database,
)


def _require(name: str) -> str:
    try:
        return require(name, ServiceSettings())
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def run_id() -> str:
    return new_run_id()


@pytest.fixture(scope="session")
def database_url(run_id: str) -> Iterator[str]:
    server = _require("PostgreSQL")
    with temporary_database(server, run_id) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _require("Redis")


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str, run_id: str) -> Iterator[str]:
    prefix = f"hl_test:{run_id}:"
    yield prefix
    delete_redis_prefix(redis_url, prefix)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return _require("RabbitMQ")


@pytest.fixture(scope="session")
def queue_names(amqp_url: str, run_id: str) -> Iterator[QueueNames]:
    names = QueueNames(amqp_url=amqp_url, prefix=f"hl_test.{run_id}.")
    yield names
    names.cleanup()


@pytest.fixture
def db(database_url: str, app_env: dict[str, str]) -> Iterator[psycopg.Connection]:
    """A direct connection to the database of the server under test (after the lab's set-up
    in `app_env`), to look at or change rows behind the API's back."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    """A direct connection to the Redis server the server under test uses."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
