"""The worker's scrape-time gauges and failure reasons, checked against a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
from devtools.launch import free_port
from prometheus_client import CollectorRegistry, generate_latest

from imgproc.config import Settings
from imgproc.metrics.worker import FAILURE_REASONS, JOBS_FAILED, OldestQueuedJobCollector

Isolated = Callable[..., Settings]

INSERT = """
INSERT INTO imgproc_jobs (id, operation, params, status, request_key, input_sha256,
                          input_format, input_bytes, created_at)
VALUES (%s, 'resize', '{}', %s, %s, %s, 'PNG', 10, now() - make_interval(secs => %s))
"""


def add_job(url: str, status: str, age_seconds: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        key = uuid.uuid4().hex * 2
        conn.execute(INSERT, (uuid.uuid4(), status, key, key, age_seconds))


def scrape(collector: OldestQueuedJobCollector) -> dict[str, float]:
    return {
        sample.name: sample.value for family in collector.collect() for sample in family.samples
    }


def test_oldest_queued_job_age_comes_from_the_job_table(isolated: Isolated) -> None:
    url = isolated("oldest").database_url
    collector = OldestQueuedJobCollector(url)
    try:
        check_oldest_queued_job_age(url, collector)
    finally:
        collector.close()


def check_oldest_queued_job_age(url: str, collector: OldestQueuedJobCollector) -> None:
    assert scrape(collector) == {"imgproc_oldest_queued_job_age_seconds": 0.0}, "none queued"

    add_job(url, "done", 900)  # finished jobs never count, however old
    add_job(url, "processing", 600)
    add_job(url, "queued", 30)
    add_job(url, "queued", 120)
    age = scrape(collector)["imgproc_oldest_queued_job_age_seconds"]
    assert 120 <= age < 180, f"the oldest queued job is 120 s old, the gauge says {age}"

    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert "# TYPE imgproc_oldest_queued_job_age_seconds gauge" in text


def test_oldest_queued_job_age_is_left_out_while_the_database_is_down() -> None:
    """No sample rather than a wrong 0 or a failed scrape: the other metrics still come."""
    collector = OldestQueuedJobCollector(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    assert scrape(collector) == {}


def test_failure_reasons_exist_from_the_start() -> None:
    """Every (operation, reason) series is exported at 0, so a dashboard shows 'none yet'."""
    registry = CollectorRegistry()
    registry.register(JOBS_FAILED)
    text = generate_latest(registry).decode()
    for operation in ("crop", "grayscale", "resize"):
        for reason in FAILURE_REASONS:
            line = f'imgproc_jobs_failed_total{{operation="{operation}",reason="{reason}"}}'
            assert line in text, f"missing series {line}"
