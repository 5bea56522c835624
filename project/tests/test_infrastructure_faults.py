"""The faults operators see: PostgreSQL restarting mid-run, a full data disk, and every kind of
infrastructure error the API can meet. Nothing may fail a job, lose one, or answer 500.

The machine's own PostgreSQL is never touched: the restart test runs a private server
(`shared.testing.postgres`) and restarts that; the disk test mounts a small tmpfs of its own as
the data directory and fills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import psycopg
import pytest
import redis
from devtools.faults import Faults
from devtools.launch import free_port, running, start_api, start_worker, wait_for
from devtools.samples import encode, photo_like
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import Engine, text
from sqlalchemy import exc as sa

from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.deps import get_session, get_store, resources_of
from imgproc.main import create_app
from imgproc.migrate import upgrade
from imgproc.storage.service import ContentStore
from shared.testing.postgres import PrivatePostgres

Isolated = Callable[..., Settings]  # the `isolated` fixture


# ---------------------------------------------------------------- every error class -> 503


def _dbapi(orig: BaseException, **kwargs: Any) -> sa.DBAPIError:
    return sa.DBAPIError("SELECT 1", {}, orig, **kwargs)


UNAVAILABLE: dict[str, BaseException] = {
    # What asyncpg's "starting up" / "shutting down" reach the API as: a plain DBAPIError.
    "asyncpg starting up (57P03)": _dbapi(asyncpg.CannotConnectNowError("starting up")),
    "asyncpg admin shutdown (57P01)": _dbapi(asyncpg.AdminShutdownError("shutting down")),
    "asyncpg connection lost (08003)": _dbapi(asyncpg.ConnectionDoesNotExistError("gone")),
    "asyncpg too many connections (53300)": _dbapi(
        asyncpg.TooManyConnectionsError("too many clients")
    ),
    "asyncpg serialization failure (40001)": _dbapi(asyncpg.SerializationError("retry")),
    "sqlalchemy connection invalidated": _dbapi(
        RuntimeError("connection was closed"), connection_invalidated=True
    ),
    "sqlalchemy OperationalError": sa.OperationalError("SELECT 1", {}, OSError("refused")),
    "sqlalchemy InterfaceError": sa.InterfaceError("SELECT 1", {}, OSError("closed")),
    "sqlalchemy pool timeout": sa.TimeoutError("QueuePool limit reached"),
    "asyncpg raw connection error": asyncpg.ConnectionDoesNotExistError("gone"),
    "asyncpg connection mid-protocol (server shutting down)": asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    ),
    "psycopg OperationalError": psycopg.OperationalError("server closed the connection"),
    "redis ConnectionError": redis.ConnectionError("Connection refused"),
    "redis TimeoutError": redis.TimeoutError("Timeout reading from socket"),
    "connection refused": ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    "timeout": TimeoutError("timed out"),
}
DISK: dict[str, OSError] = {
    "disk full": OSError(errno.ENOSPC, "No space left on device"),
    "read-only disk": OSError(errno.EROFS, "Read-only file system"),
    "disk I/O error": OSError(errno.EIO, "Input/output error"),
}


class _FailingSession:
    """Stands in for the request's database session: every use raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def begin(self) -> Any:
        raise self.error

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def connection(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def rollback(self) -> None:
        return None


class _FullStore(ContentStore):
    def __init__(self, root: Path, error: OSError) -> None:
        super().__init__(root)
        self.error = error

    def put(self, data: bytes, digest: str | None = None) -> tuple[str, bool]:
        raise self.error


AppFor = Callable[..., FastAPI]


@pytest.fixture
def app_for(settings: Settings, tmp_path: Path) -> AppFor:
    """`app_for(session_error=..., store_error=...)`: the real app with one dependency failing."""

    def make(
        *, session_error: BaseException | None = None, store_error: OSError | None = None
    ) -> FastAPI:
        app = create_app(settings.model_copy(update={"data_dir": tmp_path / "data"}))
        if session_error is not None:
            error = session_error

            async def failing_session() -> AsyncIterator[Any]:
                yield _FailingSession(error)

            app.dependency_overrides[get_session] = failing_session
        if store_error is not None:
            store = _FullStore(tmp_path / "data", store_error)
            app.dependency_overrides[get_store] = lambda: store
        return app

    return make


def call(app: FastAPI, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    """Send `(method, url, kwargs)` requests to `app` in process, in one event loop."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return [await client.request(m, url, **kw) for m, url, kw in requests]
        finally:
            await resources_of(app).close()

    return asyncio.run(run())


def _assert_503(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers.get("retry-after", "").isdigit(), f"{what}: no Retry-After"
    body = response.json()
    assert set(body) == {"error", "request_id"}, f"{what}: the JSON error shape"
    assert body["error"]["code"] == "service_unavailable", f"{what}: {body}"


@pytest.mark.parametrize("name", list(UNAVAILABLE))
def test_every_database_and_network_error_is_a_503(name: str, app_for: AppFor) -> None:
    data = encode(photo_like(40, 30, seed=sum(map(ord, name)) % 1000), "PNG")
    submit, status, result = call(
        app_for(session_error=UNAVAILABLE[name]),
        ("POST", "/grayscale", {"files": {"file": ("a.png", data)}}),
        ("GET", f"/task-status/{uuid.uuid4()}", {}),
        ("GET", f"/result/{uuid.uuid4()}", {}),
    )
    _assert_503(submit, f"submit, {name}")
    _assert_503(status, f"status, {name}")
    _assert_503(result, f"result, {name}")


@pytest.mark.parametrize("name", list(DISK))
def test_every_disk_error_is_a_503(name: str, app_for: AppFor) -> None:
    data = encode(photo_like(40, 30, seed=700 + len(name)), "PNG")
    (submit,) = call(
        app_for(store_error=DISK[name]),
        ("POST", "/grayscale", {"files": {"file": ("a.png", data)}}),
    )
    _assert_503(submit, f"submit, {name}")


def test_a_bug_in_the_database_layer_is_still_a_500(app_for: AppFor) -> None:
    """Not every database error is an outage: a violated constraint is a bug, not a retry."""
    bug = sa.IntegrityError("INSERT", {}, RuntimeError("duplicate key"))
    (response,) = call(app_for(session_error=bug), ("GET", f"/task-status/{uuid.uuid4()}", {}))
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"


def test_a_405_names_the_allowed_methods(client: httpx.Client) -> None:
    response = client.delete(f"/task-status/{uuid.uuid4()}")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    assert response.json()["error"]["code"] == "method_not_allowed"


# ---------------------------------------------------------------- PostgreSQL restarted mid-run


def _settings_on(settings: Settings, database_url: str, name: str, tmp: Path) -> Settings:
    return settings.model_copy(
        update={
            "database_url": database_url,
            "celery_queue": f"{settings.celery_queue}.{name}",
            "redis_prefix": f"{settings.redis_prefix}{name}:",
            "data_dir": tmp / "data",
            "worker_metrics_port": 0,
            "prometheus_multiproc_dir": None,
            # Leases far longer than the test: a job may only go on because the worker put it
            # back (or took it back) itself, never because a lease ran out.
            "processing_timeout_seconds": 600,
            "queued_timeout_seconds": 600,
            "retry_backoff_base": 0.2,
            "retry_backoff_max": 2,
        }
    )


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, status, attempts, transient_retries, error, output_width"
                    " FROM imgproc_jobs"
                )
            ).all()
        )


def _submit_until_accepted(
    client: httpx.Client, data: bytes, answers: Counter[str], deadline: float
) -> str:
    """Submit like a well-behaved client: on 503 wait (briefly) and send again."""
    while time.monotonic() < deadline:
        try:
            response = client.post("/resize", files={"file": ("p.png", data)}, data={"width": "24"})
        except httpx.TransportError:
            answers["transport error"] += 1
            time.sleep(0.2)
            continue
        answers[str(response.status_code)] += 1
        if response.status_code in (200, 202):
            return str(response.json()["task_id"])
        assert response.status_code == 503, (
            f"during the fault: {response.status_code} {response.text}"
        )
        assert response.headers.get("retry-after"), "a 503 without Retry-After"
        time.sleep(0.2)  # (Retry-After says 5 s; this client is in a hurry)
    raise AssertionError("a submission was never accepted")


def test_postgres_restarted_mid_run_fails_and_loses_nothing(
    settings: Settings, logs_dir: Path, tmp_path: Path
) -> None:
    jobs, threads = 240, 4
    with PrivatePostgres() as pg:
        s = _settings_on(settings, pg.url, "pgrestart", tmp_path)
        upgrade(s.database_url)
        engine = make_sync_engine(s.database_url)
        port = free_port()
        answers: Counter[str] = Counter()
        ids: list[str] = []
        lock = threading.Lock()
        restart_seconds: list[float] = []
        try:
            with running(
                lambda: start_api(s, logs_dir / "pgrestart-api.log", port=port),
                lambda: start_worker(
                    s, logs_dir / "pgrestart-worker.log", concurrency=2, pool="prefork"
                ),
            ):

                def submitter(offset: int) -> None:
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                        for i in range(offset, jobs, threads):
                            data = encode(photo_like(48, 32, seed=5000 + i), "PNG")
                            counts: Counter[str] = Counter()
                            task = _submit_until_accepted(
                                client, data, counts, time.monotonic() + 120
                            )
                            with lock:
                                ids.append(task)
                                answers.update(counts)

                workers = [threading.Thread(target=submitter, args=(t,)) for t in range(threads)]
                for w in workers:
                    w.start()
                wait_for(lambda: len(ids) >= jobs // 3, timeout=120, what="a third submitted")
                restart_seconds.append(pg.restart())  # mid-run: submits and jobs in flight
                for w in workers:
                    w.join(timeout=180)
                assert len(ids) == jobs, f"{len(ids)} of {jobs} submissions accepted"
                finished_by = time.monotonic() + 90  # the lease is 600 s: no waiting it out
                wait_for(
                    lambda: (
                        all(r.status in ("done", "failed") for r in _rows(engine))
                        and len(_rows(engine)) == jobs
                    ),
                    timeout=finished_by - time.monotonic(),
                    what="every job to finish after the restart",
                )
            rows = _rows(engine)
        finally:
            engine.dispose()
    by_status = Counter(r.status for r in rows)
    retried = sum(r.transient_retries for r in rows)
    print(
        f"\nPostgreSQL restart ({restart_seconds[0]:.1f} s) mid-run: {jobs} jobs,"
        f" {by_status['done']} done, {by_status['failed']} failed;"
        f" API answers {dict(answers)}; transient retries {retried}"
    )
    assert by_status == {"done": jobs}, f"jobs must all be done, none failed: {by_status}"
    assert all(r.output_width == 24 for r in rows)
    assert "500" not in answers, f"a 500 during the restart: {answers}"
    assert len(set(ids)) == jobs, "every accepted submission is its own job"


# ---------------------------------------------------------------- the data disk full


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `path` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test (root needed): {result.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it (delete it to free the space)."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_full_data_disk_is_a_503_and_fails_no_job(
    settings: Settings, logs_dir: Path, tmp_path: Path, isolated: Isolated
) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    with small_disk(tmp_path / "disk", 24) as disk:
        base = isolated("diskfull")
        s = base.model_copy(
            update={
                "data_dir": disk / "data",
                "processing_timeout_seconds": 600,
                "queued_timeout_seconds": 600,
                "retry_backoff_base": 0.5,
                "retry_backoff_max": 2,
            }
        )
        engine = make_sync_engine(s.database_url)
        port = free_port()
        try:
            with (
                running(
                    lambda: start_api(s, logs_dir / "diskfull-api.log", port=port),
                    lambda: start_worker(
                        s, logs_dir / "diskfull-worker.log", faults=Faults(hold_file=hold)
                    ),
                ),
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
            ):
                ids = []
                for i in range(4):  # inputs stored; the worker holds the first one
                    data = encode(photo_like(640, 480, seed=800 + i), "JPEG", quality=90)
                    response = client.post("/grayscale", files={"file": ("a.jpg", data)})
                    assert response.status_code == 202, response.text
                    ids.append(response.json()["task_id"])
                assert client.get("/readyz").json()["status"] == "ready"
                filler = fill(disk)
                rows_before = len(_rows(engine))
                data = encode(photo_like(640, 480, seed=900), "JPEG", quality=90)
                refused = client.post("/grayscale", files={"file": ("b.jpg", data)})
                _assert_503(refused, "an upload to a full disk")
                assert len(_rows(engine)) == rows_before, "a refused upload writes no row"
                ready = client.get("/readyz")
                assert ready.status_code == 200 and ready.json()["status"] == "degraded"
                assert "storage" in ready.json()["checks"]
                assert ready.json()["checks"]["storage"].startswith("error"), ready.json()
                hold.unlink()  # the worker goes on: its outputs meet the full disk
                wait_for(
                    lambda: sum(r.transient_retries for r in _rows(engine)) >= 2,
                    timeout=30,
                    what="the worker to meet the full disk and retry",
                )
                time.sleep(10)  # the disk stays full a while; nothing may fail meanwhile
                assert all(r.status != "failed" for r in _rows(engine)), _rows(engine)
                filler.unlink()
                wait_for(
                    lambda: all(r.status == "done" for r in _rows(engine)),
                    timeout=60,
                    what="every job to finish once there is space again",
                )
                assert client.get("/readyz").json()["status"] == "ready"
                for task_id in ids:
                    out = Image.open(io.BytesIO(client.get(f"/result/{task_id}").content))
                    assert out.mode == "L" and out.size == (640, 480)
            rows = _rows(engine)
            print(
                f"\ndisk full: {len(rows)} jobs, {sum(r.status == 'done' for r in rows)} done,"
                f" 0 failed; transient retries {sum(r.transient_retries for r in rows)};"
                f" upload while full: {refused.status_code}"
            )
        finally:
            engine.dispose()
