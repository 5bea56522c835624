"""Pytest fixtures that give a test run its own namespace in each real service.

Loaded for every test run (see `addopts` in pyproject.toml). A service that is down fails the
test that needs it with a message naming the URL and how to start it; it never skips silently.

- `run_id`: short random id of this run, part of every name below.
- `database_url`: a fresh PostgreSQL database `hl_test_<run_id>`, dropped at the end.
- `redis_url`, `redis_prefix`: the Redis server and a key prefix whose keys are deleted at the end.
- `amqp_url`, `queue_names`: the broker and a factory of run-scoped queue names, deleted at the end.
- `redis_client`: a direct connection for tests that look behind a server's back (the `db`
  connection is in `shared.testing.http`: it belongs to the server under test).

Grading a deployment (`--base-url`), `--database-url`, `--redis-url` and `--redis-prefix` name
the deployment's own database and Redis keys instead: those are used as they are, never
created or cleaned up.
"""

from __future__ import annotations

from collections.abc import Iterator

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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading", "course grading harness")
    group.addoption("--database-url", default=None, help="the deployment's database (kept as is)")
    group.addoption("--redis-url", default=None, help="the deployment's Redis server")
    group.addoption("--redis-prefix", default=None, help="the deployment's Redis key prefix")


def _require(name: str) -> str:
    try:
        return require(name, ServiceSettings())
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def run_id() -> str:
    return new_run_id()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, run_id: str) -> Iterator[str]:
    if given := request.config.getoption("database_url"):
        yield str(given)
        return
    server = _require("PostgreSQL")
    with temporary_database(server, run_id) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("redis_url") or _require("Redis"))


@pytest.fixture(scope="session")
def redis_prefix(request: pytest.FixtureRequest, redis_url: str, run_id: str) -> Iterator[str]:
    if given := request.config.getoption("redis_prefix"):
        yield str(given)
        return
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
def redis_client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    """A direct connection to the Redis server the server under test uses."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
