"""Protection under overload, against real processes: per-client rate limits (429) and load
shedding (503 `overloaded`), each with `Retry-After`, counted in metrics, failing open.

Each test starts an API of its own with the settings it needs (a rule of a few requests per
10 s, a queue bound of a few jobs), on its own database, Redis prefix and data directory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from devtools.launch import free_port, running, start_api, start_worker, wait_for
from devtools.samples import encode, photo_like
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from imgproc.config import Settings
from imgproc.db import make_sync_engine

Isolated = Callable[..., Settings]  # the `isolated` fixture


@contextlib.contextmanager
def api(settings: Settings, log: Path) -> Iterator[httpx.Client]:
    port = free_port()
    with (
        running(lambda: start_api(settings, log, port=port)),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def image(seed: int) -> bytes:
    return encode(photo_like(32, 24, seed=seed), "PNG")


def upload(client: httpx.Client, seed: int, **headers: str) -> httpx.Response:
    return client.post("/grayscale", files={"file": ("a.png", image(seed))}, headers=headers)


def rows(settings: Settings) -> int:
    engine = make_sync_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM imgproc_jobs")).scalar_one())
    finally:
        engine.dispose()


def files(settings: Settings) -> int:
    objects = settings.data_dir / "objects"
    return sum(1 for p in objects.rglob("*") if p.is_file()) if objects.exists() else 0


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"]["code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_a_burst_over_the_rate_limit_gets_429s_with_a_correct_retry_after(
    isolated: Isolated, logs_dir: Path
) -> None:
    # 5 per 10 s: five at once, then one every 2 s.
    settings = isolated("rl", rate_limit="5 per 10 seconds", max_queued_jobs=0)
    with api(settings, logs_dir / "api-ratelimit.log") as client:
        accepted = [upload(client, 100 + i, **{"X-API-Key": "alice"}) for i in range(5)]
        assert [r.status_code for r in accepted] == [202] * 5, [r.text for r in accepted]
        assert [r.headers["x-ratelimit-remaining"] for r in accepted] == ["4", "3", "2", "1", "0"]
        assert accepted[0].headers["x-ratelimit-limit"] == "5"
        first_refusal = time.monotonic()
        refused = [upload(client, 200 + i, **{"X-API-Key": "alice"}) for i in range(3)]
        for response in refused:
            body = assert_refused(response, 429, "rate_limited")
            # The next slot opens 2 s after the burst began: Retry-After is that, rounded up.
            assert response.headers["retry-after"] == "2", response.headers
            assert 0 < body["error"]["details"]["retry_after_ms"] <= 2000, body
        assert rows(settings) == 5 and files(settings) == 5, "a refused upload writes nothing"
        # Another client has its own budget; so does an address without a key.
        assert upload(client, 300, **{"X-API-Key": "bob"}).status_code == 202
        assert upload(client, 301).status_code == 202
        # Waiting as told is enough, and exactly one more request fits.
        wait_ms = refused[-1].json()["error"]["details"]["retry_after_ms"]
        time.sleep(max(0.0, wait_ms / 1000 - (time.monotonic() - first_refusal)) + 0.05)
        assert upload(client, 400, **{"X-API-Key": "alice"}).status_code == 202
        assert upload(client, 401, **{"X-API-Key": "alice"}).status_code == 429
        assert metric(client, "imgproc_rate_limited_total", rule="upload") == 4
        assert metric(client, "http_requests_total", handler="/grayscale", status="429") == 4
        # Health and metrics are never limited.
        assert all(client.get("/healthz").status_code == 200 for _ in range(10))


def test_under_the_limit_nothing_is_refused_and_reads_have_their_own_budget(
    isolated: Isolated, logs_dir: Path
) -> None:
    settings = isolated(
        "rl2", rate_limit="20 per 1 second", read_rate_limit="3 per 10 seconds", max_queued_jobs=0
    )
    with api(settings, logs_dir / "api-ratelimit2.log") as client:
        # 40 uploads at 10/s against 20/s: none refused.
        statuses = []
        for i in range(40):
            statuses.append(upload(client, 500 + i).status_code)
            time.sleep(0.1)
        assert statuses == [202] * 40
        task = upload(client, 600).json()["task_id"]
        reads = [client.get(f"/task-status/{task}").status_code for _ in range(4)]
        assert reads == [200, 200, 200, 429], reads
        assert_refused(client.get(f"/result/{task}"), 429, "rate_limited")
        # The read budget is spent; uploads are counted apart.
        assert upload(client, 601).status_code == 202
        assert metric(client, "imgproc_rate_limited_total", rule="read") == 2
        assert metric(client, "imgproc_rate_limited_total", rule="upload") == 0


def test_the_rate_limit_fails_open_when_redis_is_down(isolated: Isolated, logs_dir: Path) -> None:
    settings = isolated(
        "rl3", rate_limit="1 per 10 seconds", cache_url="redis://127.0.0.1:1/0", max_queued_jobs=0
    )
    with api(settings, logs_dir / "api-ratelimit-down.log") as client:
        statuses = [upload(client, 700 + i).status_code for i in range(5)]
        assert statuses == [202] * 5, "without Redis the limit is not enforced, nothing refused"
        assert metric(client, "imgproc_admission_unchecked_total", check="rate_limit") == 5
        assert metric(client, "imgproc_rate_limited_total") == 0


def test_past_the_queue_bound_uploads_get_503_and_nothing_is_written(
    isolated: Isolated, logs_dir: Path
) -> None:
    settings = isolated(
        "shed", max_queued_jobs=5, load_check_interval_seconds=0.2, shed_retry_after_seconds=7
    )
    with api(settings, logs_dir / "api-shed.log") as client:
        # No worker: the jobs stay queued.
        for i in range(5):
            assert upload(client, 800 + i).status_code == 202
        time.sleep(0.3)  # the API's cached count is at most 0.2 s old
        for i in range(5):
            response = upload(client, 900 + i)
            body = assert_refused(response, 503, "overloaded")
            assert response.headers["retry-after"] == "7"
            details = body["error"]["details"]
            assert details["reason"] == "queue_depth" and details["queued"] == 5, details
        assert rows(settings) == 5, "a shed upload must insert no row"
        assert files(settings) == 5, "a shed upload must store no file"
        assert metric(client, "imgproc_load_shed_total", reason="queue_depth") == 5
        # Reads of accepted work are never shed.
        task = client.get("/task-status/00000000-0000-4000-8000-000000000000")
        assert task.status_code == 404
        # A worker drains the queue: uploads are accepted again.
        worker = start_worker(settings, logs_dir / "worker-shed.log", pool="solo")
        try:

            def queue_empty() -> bool:
                engine = make_sync_engine(settings.database_url)
                try:
                    with engine.connect() as conn:
                        sql = "SELECT count(*) FROM imgproc_jobs WHERE status = 'queued'"
                        return int(conn.execute(text(sql)).scalar_one()) == 0
                finally:
                    engine.dispose()

            wait_for(queue_empty, timeout=30, what="the worker to drain the queue")
            time.sleep(0.3)
            assert upload(client, 1000).status_code == 202
        finally:
            worker.stop()


def test_an_old_queued_job_sheds_new_uploads(isolated: Isolated, logs_dir: Path) -> None:
    settings = isolated(
        "shedage", max_queued_jobs=0, max_queued_age_seconds=1, load_check_interval_seconds=0.2
    )
    with api(settings, logs_dir / "api-shed-age.log") as client:
        assert upload(client, 1100).status_code == 202
        assert upload(client, 1101).status_code == 202  # the oldest is young yet
        time.sleep(1.5)
        body = assert_refused(upload(client, 1102), 503, "overloaded")
        assert body["error"]["details"]["reason"] == "queue_age", body
        assert body["error"]["details"]["oldest_queued_age_seconds"] > 1
        assert rows(settings) == 2
        assert metric(client, "imgproc_load_shed_total", reason="queue_age") == 1


def test_the_load_check_fails_open(settings: Settings, logs_dir: Path, tmp_path: Path) -> None:
    """PostgreSQL down: the check cannot read the queue and lets the upload through, so the
    answer is the submission's own `service_unavailable`, never `overloaded`."""
    broken = settings.model_copy(
        update={
            "database_url": "postgresql://postgres@127.0.0.1:1/nowhere",
            "data_dir": tmp_path / "data",
            "max_queued_jobs": 1,
            "rate_limit": "",
        }
    )
    with api(broken, logs_dir / "api-shed-nodb.log") as client:
        assert_refused(upload(client, 1200), 503, "service_unavailable")
        assert metric(client, "imgproc_admission_unchecked_total", check="load") >= 1
        assert metric(client, "imgproc_load_shed_total") == 0


def test_admission_series_exist_from_the_start(client: httpx.Client) -> None:
    for name, labels in [
        ("imgproc_rate_limited_total", {"rule": "upload"}),
        ("imgproc_rate_limited_total", {"rule": "read"}),
        ("imgproc_load_shed_total", {"reason": "queue_depth"}),
        ("imgproc_load_shed_total", {"reason": "queue_age"}),
        ("imgproc_admission_unchecked_total", {"check": "rate_limit"}),
        ("imgproc_admission_unchecked_total", {"check": "load"}),
    ]:
        found = [
            s
            for f in text_string_to_metric_families(client.get("/metrics").text)
            for s in f.samples
            if s.name == name and s.labels == labels
        ]
        assert found, f"{name}{labels} is not exported before anything happened"
