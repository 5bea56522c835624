"""Pytest fixtures for the HTTP labs: the implementation under test, its server and a client.

Loaded for every test run (see `addopts` in pyproject.toml), after `shared.testing.fixtures`
(whose per-run database and Redis prefix the labs' `app_env` builds on). What it adds:

- options: `--impl PATH` (the implementation to grade; default the lab's `solution/` if it
  exists, else `starter/`) and `--base-url URL` (grade a running deployment instead of
  starting a server);
- fixtures: `lab_dir`, `impl_dir`, `app_env` (each lab's conftest overrides it), `app_server`,
  `base_url`, `client`, and `db` (a connection to the database the server under test uses);
- grading a deployment: a test that needs more than HTTP (the deployment's database, its Redis
  keys, a server the grader can restart, the source code) is "not gradable through
  --base-url" unless the option that supplies it is given (`--database-url`, `--redis-url` with
  `--redis-prefix`, `--impl`). Such a test is not run; the grading plugin reports it and leaves
  its points out of the maximum. What a test needs is read from the fixtures it uses and from
  the markers `needs_db`, `needs_redis`, `needs_server`, `needs_source`.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from shared.labs import default_impl
from shared.testing.regression import graded_lab
from shared.testing.server import AppServer

NOT_GRADABLE = "not gradable through --base-url"

# What a test can need beyond HTTP, how the harness sees it in the test's fixtures, and the
# options that make it available when grading a deployment.
NEEDS: dict[str, tuple[frozenset[str], str]] = {
    "needs_db": (
        frozenset({"db", "database_url"}),
        "reads the deployment's database: give --database-url",
    ),
    "needs_redis": (
        frozenset({"redis_client", "redis_prefix"}),
        "reads the deployment's Redis keys: give --redis-url and --redis-prefix",
    ),
    "needs_server": (
        frozenset({"app_server", "app_env"}),
        "restarts or reconfigures the server, which only works on a server the grader starts",
    ),
    "needs_source": (frozenset({"impl_dir"}), "reads the source code: give --impl"),
}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client a run opens.

    httpx builds a new one per client by default, loading ~150 CA certificates: ~50 ms of CPU
    per client, 0.5 s on a busy machine, paid by every test. The servers under test speak
    plain HTTP, and a context is safe to share between clients and threads.
    """
    return httpx.create_ssl_context()


def http_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """An httpx.Client on `base_url` (10 s timeout unless given) sharing `tls_context()`."""
    kwargs.setdefault("timeout", 10)
    return httpx.Client(base_url=base_url, verify=tls_context(), **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading", "course grading harness")
    group.addoption("--impl", default=None, help="implementation folder to grade")
    group.addoption("--base-url", default=None, help="grade a running server at this URL")


def pytest_configure(config: pytest.Config) -> None:
    impl = config.getoption("impl")
    if impl and not Path(impl).is_dir():
        # Otherwise every test errors on a missing app and the run reads as a score of 0.
        raise pytest.UsageError(f"--impl {impl}: no such folder")
    for marker, (_, why) in NEEDS.items():
        config.addinivalue_line("markers", f"{marker}: the test {why.split(':')[0]}")
    config.addinivalue_line(
        "markers", "not_gradable(reason): set by the harness on a test it cannot run here"
    )


def missing_needs(config: pytest.Config, item: pytest.Item) -> list[str]:
    """What `item` needs that grading through --base-url does not provide (empty otherwise)."""
    if not config.getoption("base_url"):
        return []
    provided = {
        "needs_db": bool(config.getoption("database_url")),
        "needs_redis": bool(config.getoption("redis_url") and config.getoption("redis_prefix")),
        "needs_server": False,
        "needs_source": bool(config.getoption("impl")),
    }
    names = set(getattr(item, "fixturenames", ()))
    missing = []
    for marker, (fixtures, why) in NEEDS.items():
        wanted = item.get_closest_marker(marker) is not None or bool(names & fixtures)
        if wanted and not provided[marker]:
            missing.append(why)
    return missing


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Decided before anything runs, so no lab set-up (a fresh database, migrations) runs for a
    # deployment that has its own.
    for item in items:
        if missing := missing_needs(config, item):
            item.add_marker(pytest.mark.not_gradable(reason="; ".join(missing)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("not_gradable")
    if marker is not None:
        pytest.skip(f"{NOT_GRADABLE}: {marker.kwargs.get('reason', '')}")


def not_gradable(reason: str) -> None:
    """Leave the current test out of the grade (reported, never a silent loss of points)."""
    pytest.skip(f"{NOT_GRADABLE}: {reason}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def lab_dir(request: pytest.FixtureRequest) -> Path:
    """The lab being graded (`labs/labNN_*`), whose tests this run collected."""
    labs = {lab for item in request.session.items if (lab := graded_lab(item)) is not None}
    if len(labs) != 1:
        pytest.fail("this fixture only works in one lab's tests (labs/labNN_*/tests)")
    return labs.pop()


@pytest.fixture(scope="session")
def impl_dir(request: pytest.FixtureRequest, lab_dir: Path) -> Path:
    """The implementation under test: `--impl PATH`, else the lab's solution/ or starter/."""
    option = request.config.getoption("impl")
    path = Path(option).resolve() if option else default_impl(lab_dir)
    if not (path / "app").is_dir():
        pytest.fail(
            f"--impl {path}: expected a folder with an `app` package (app/__main__.py)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def app_env() -> dict[str, str]:
    """Extra environment for the server under test. Each lab's conftest overrides this."""
    return {}


@pytest.fixture(scope="session")
def app_server(
    request: pytest.FixtureRequest, impl_dir: Path, app_env: dict[str, str]
) -> Iterator[AppServer]:
    if request.config.getoption("base_url"):
        not_gradable(NEEDS["needs_server"][1])
    with AppServer(impl_dir, app_env) as server:
        yield server


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> str:
    option = request.config.getoption("base_url")
    if option:
        return str(option).rstrip("/")
    server: AppServer = request.getfixturevalue("app_server")
    return server.base_url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with http_client(base_url) as http:
        yield http


@pytest.fixture
def db(request: pytest.FixtureRequest, database_url: str) -> Iterator[psycopg.Connection]:
    """A direct connection to the database of the server under test, to look at or change rows
    behind the API's back.

    On a server the grader starts, the lab's `app_env` (migrations, seed rows) runs first, so
    the tables exist; on a deployment (`--base-url` with `--database-url`) the deployment's
    own database is used as it is.
    """
    if not request.config.getoption("base_url"):
        request.getfixturevalue("app_env")
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
