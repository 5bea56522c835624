"""Fixtures of the capstone tests: real PostgreSQL, Redis and Celery worker processes.

Everything lives under the run's namespace: the run's database (`database_url`), Redis keys
under `redis_prefix` (the Celery queue included, via kombu's `global_keyprefix`), a temporary
data directory. Processes are started with a bounded wait and stopped at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devtools.launch import Child, free_port, start_api, start_worker, wait_for
from sqlalchemy import Engine, text

from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.migrate import upgrade
from shared.testing.namespaces import temporary_database


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    root = tmp_path_factory.mktemp("imgproc")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        celery_queue=f"imgproc.{run_id}",
        data_dir=root / "data",
        prometheus_multiproc_dir=root / "prom",
        worker_metrics_port=free_port(),
        # Short timeouts so recovery paths run in seconds, not minutes.
        queued_timeout_seconds=10,
        processing_timeout_seconds=5,
        reconcile_interval_seconds=1,
        broker_visibility_timeout=60,
        max_attempts=3,
        retry_backoff_base=0.1,
        retry_backoff_max=1,
        log_json=True,
    )


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> str:
    upgrade(settings.database_url)
    return settings.database_url


@pytest.fixture(scope="session")
def db(migrated: str) -> Iterator[Engine]:
    engine = make_sync_engine(migrated)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def worker(settings: Settings, migrated: str, logs_dir: Path) -> Iterator[Child]:
    child = start_worker(
        settings,
        logs_dir / "worker.log",
        concurrency=2,
        beat_schedule=logs_dir / "beat-schedule",
    )
    yield child
    child.stop()


@pytest.fixture(scope="session")
def api_url(settings: Settings, migrated: str, logs_dir: Path) -> Iterator[str]:
    port = free_port()
    child = start_api(settings, logs_dir / "api.log", port=port)
    yield f"http://127.0.0.1:{port}"
    child.stop()


@pytest.fixture(scope="session")
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as c:
        yield c


@pytest.fixture
def stack(client: httpx.Client, worker: Child) -> httpx.Client:
    """The API with a running worker behind it."""
    return client


WaitDone = Callable[..., dict[str, Any]]


def _wait_done(client: httpx.Client, task_id: str, *, timeout: float = 30) -> dict[str, Any]:
    """Poll /task-status until the job is final; return the status document."""
    last: dict[str, Any] = {}

    def final() -> bool:
        nonlocal last
        last = client.get(f"/task-status/{task_id}").json()
        return last.get("status") in ("done", "failed")

    wait_for(final, timeout=timeout, what=f"task {task_id} to finish")
    return last


@pytest.fixture(scope="session")
def wait_done() -> WaitDone:
    """`wait_done(client, task_id, timeout=30)`: the final status document of a task."""
    return _wait_done


@pytest.fixture(scope="session")
def row_count(db: Engine) -> Callable[[], int]:
    def count() -> int:
        with db.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM imgproc_jobs")).scalar_one())

    return count


def stored_files(data_dir: Path) -> int:
    """How many files the content store holds under `data_dir` (to prove none was left)."""
    objects = data_dir / "objects"
    return sum(1 for p in objects.rglob("*") if p.is_file()) if objects.exists() else 0


@pytest.fixture(scope="session")
def blob_count() -> Callable[[Path], int]:
    """`blob_count(data_dir)`: how many files the content store holds there."""
    return stored_files


Isolated = Callable[..., Settings]


@pytest.fixture
def isolated(settings: Settings, run_id: str, tmp_path: Path) -> Iterator[Isolated]:
    """`isolated(name, **overrides)`: settings with their own database, queue, keys and files.

    For tests that start their own worker or touch job rows directly: the session worker's
    reconciler must not see (and steal) their jobs, so they get a database of their own.
    """
    with contextlib.ExitStack() as stack:

        def make(name: str, **overrides: Any) -> Settings:
            url = stack.enter_context(
                temporary_database(settings.database_url, run_id, suffix=f"_{name}")
            )
            upgrade(url)
            update: dict[str, Any] = {
                "database_url": url,
                "celery_queue": f"{settings.celery_queue}.{name}",
                "redis_prefix": f"{settings.redis_prefix}{name}:",
                "data_dir": tmp_path / name / "data",
                "worker_metrics_port": 0,
                "prometheus_multiproc_dir": None,
            }
            return settings.model_copy(update={**update, **overrides})

        yield make
