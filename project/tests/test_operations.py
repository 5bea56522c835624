"""Health, readiness, docs, metrics from API and worker, and the API with a backing service down
or its database connections killed."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
from devtools.launch import Child, free_port, running, start_api
from devtools.samples import encode, photo_like
from prometheus_client.parser import text_string_to_metric_families

from imgproc.config import Settings
from shared.settings import plain_postgres_url

WaitDone = Callable[..., dict[str, Any]]  # the `wait_done` fixture


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= ls)


def test_health_readiness_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "postgres": "ok",
        "redis": "ok",
        "broker": "ok",
        "storage": "ok",
    }
    assert ready.json()["status"] == "ready"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text, "/docs must work offline"
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/crop", "/grayscale", "/resize", "/task-status/{task_id}", "/result/{task_id}"} <= set(
        paths
    )


def test_metrics_from_api_and_worker(
    stack: httpx.Client, worker: Child, settings: Settings, wait_done: WaitDone
) -> None:
    data = encode(photo_like(80, 60, seed=404), "PNG")
    ids = [
        stack.post("/resize", files={"file": ("a.png", data)}, data={"width": str(w)}).json()[
            "task_id"
        ]
        for w in (20, 21, 22)
    ]
    repeat = stack.post("/resize", files={"file": ("a.png", data)}, data={"width": "20"})
    assert repeat.json()["cache_hit"] is True
    for task_id in ids:
        assert wait_done(stack, task_id)["status"] == "done"
    assert stack.get("/task-status/00000000-0000-4000-8000-000000000000").status_code == 404

    api = samples(stack.get("/metrics").text)
    assert value(api, "http_requests_total", handler="/resize", method="POST", status="202") >= 3
    assert value(api, "http_requests_total", handler="/task-status/{task_id}", status="404") >= 1
    assert value(api, "http_request_duration_seconds_count", handler="/resize") >= 4
    assert value(api, "imgproc_cache_requests_total", cache="dedup", result="hit") >= 1
    assert value(api, "imgproc_cache_requests_total", cache="dedup", result="miss") >= 3
    assert value(api, "imgproc_jobs_submitted_total", operation="resize", deduplicated="true") >= 1

    url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    worker_metrics = samples(httpx.get(url, timeout=5).text)
    assert (
        value(worker_metrics, "imgproc_jobs_processed_total", operation="resize", outcome="done")
        >= 3
    )
    assert value(worker_metrics, "imgproc_job_processing_seconds_count", operation="resize") >= 3
    assert (
        value(
            worker_metrics, "imgproc_job_processing_seconds_bucket", operation="resize", le="+Inf"
        )
        >= 3
    )
    assert (
        "imgproc_queue_depth",
        frozenset({("queue", f"{settings.redis_prefix}{settings.celery_queue}")}),
    ) in worker_metrics
    retries = ("imgproc_job_retries_total", frozenset({("operation", "resize")}))
    assert retries in worker_metrics, "the retry counter is exported (from 0) per operation"


@contextlib.contextmanager
def api_client(settings: Settings, log: Path) -> Iterator[httpx.Client]:
    """An API of its own, started with `settings`, and a client for it."""
    port = free_port()
    with (
        running(lambda: start_api(settings, log, port=port)),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


def test_api_works_from_postgres_with_the_cache_down(
    worker: Child, settings: Settings, migrated: str, logs_dir: Path, wait_done: WaitDone
) -> None:
    # Same database, queue and worker; only the cache points at a port nobody listens on.
    no_cache = settings.model_copy(update={"cache_url": "redis://127.0.0.1:1/0"})
    with api_client(no_cache, logs_dir / "api-nocache.log") as client:
        data = encode(photo_like(50, 50, seed=500), "PNG")
        first = client.post("/grayscale", files={"file": ("a.png", data)})
        assert first.status_code == 202, first.text
        second = client.post("/grayscale", files={"file": ("a.png", data)})
        assert second.json()["task_id"] == first.json()["task_id"], (
            "without the cache, PostgreSQL's unique request key still de-duplicates"
        )
        assert second.json()["cache_hit"] is True
        status = wait_done(client, first.json()["task_id"])
        assert status["status"] == "done"
        assert client.get(f"/result/{status['task_id']}").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200, "a cache outage must not take a working API out"
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"].startswith("error")
        metrics = samples(client.get("/metrics").text)
        assert value(metrics, "imgproc_cache_requests_total", result="error") >= 2


def test_database_down_is_a_503_and_leaves_no_file(
    settings: Settings, logs_dir: Path, tmp_path: Path, blob_count: Callable[[Path], int]
) -> None:
    down = settings.model_copy(
        update={
            "database_url": "postgresql://postgres@127.0.0.1:1/nowhere",
            "data_dir": tmp_path / "data",
        }
    )
    with api_client(down, logs_dir / "api-nodb.log") as client:
        data = encode(photo_like(40, 30, seed=510), "PNG")
        response = client.post("/grayscale", files={"file": ("a.png", data)})
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response.headers["retry-after"] == "5"
        assert blob_count(down.data_dir) == 0, "the stored upload was removed again"
        status = client.get(f"/task-status/{uuid.uuid4()}")
        assert status.status_code == 503 and status.json()["error"]["code"] == "service_unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "postgres" in ready.json()["error"]["message"]


def test_killed_database_connections_cost_one_503_then_uploads_work(
    isolated: Callable[..., Settings], logs_dir: Path
) -> None:
    """What a PostgreSQL restart does to a running API: every pooled connection dies at once.

    The upload's INSERT runs on the driver's connection, past SQLAlchemy (ADR 0007), so it must
    handle a dead connection as SQLAlchemy does: the first request that meets one answers 503
    and the whole pool is replaced, instead of one 503 per dead pooled connection.
    """
    # No ping of idle connections and no load-shedding query (which would find a dead
    # connection on SQLAlchemy's path first): the uploads alone meet the dead connections.
    s = isolated("killed", db_ping_after_idle_seconds=3600, max_queued_jobs=0)
    # One photo at new widths: new jobs whose input is already stored, so a failed request has
    # no file of its own to clean up (that clean-up would go through SQLAlchemy, and replace
    # the pool for the driver path).
    data = encode(photo_like(60, 40, seed=520), "PNG")
    widths = iter(range(1, 60))

    def upload() -> int:
        form = {"width": str(next(widths))}
        return client.post("/resize", files={"file": ("a.png", data)}, data=form).status_code

    with api_client(s, logs_dir / "api-killed.log") as client:
        assert upload() == 202
        with ThreadPoolExecutor(8) as pool:  # several uploads at once: several pooled connections
            assert set(pool.map(lambda _: upload(), range(24))) == {202}
        with psycopg.connect(plain_postgres_url(s.database_url), autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM"
                " pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert row is not None and row[0] >= 3, f"only {row} API connections to kill"
        statuses = [upload() for _ in range(10)]
    refused = statuses.count(503)
    assert refused <= 1 and statuses.count(202) == len(statuses) - refused, (
        f"after {row[0]} connections were killed: {statuses} (one 503 at most, then 202s)"
    )


def test_a_hanging_cache_costs_one_timeout_not_one_per_request(
    settings: Settings, migrated: str, logs_dir: Path
) -> None:
    # A port that accepts connections and never answers: a hung Redis, not a stopped one.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        cache_port = silent.getsockname()[1]
        hung = settings.model_copy(update={"cache_url": f"redis://127.0.0.1:{cache_port}/0"})
        with api_client(hung, logs_dir / "api-hungcache.log") as client:
            timings = []
            for i in range(6):
                data = encode(photo_like(30, 30, seed=520 + i), "PNG")
                started = time.perf_counter()
                response = client.post("/grayscale", files={"file": ("a.png", data)})
                timings.append(time.perf_counter() - started)
                assert response.status_code == 202, response.text
                status = client.get(f"/task-status/{response.json()['task_id']}")
                assert status.status_code == 200
    assert timings[0] >= hung.cache_socket_timeout, "the first request meets the hung cache"
    assert max(timings[1:]) < hung.cache_socket_timeout, (
        f"later requests skip the cache while it is paused, {timings}"
    )
