"""Measurements behind the capacity model in project/README.md ("Capacity model").

1. Per-worker throughput by operation and image size: one `--pool solo` worker drains a queue
   of N jobs of one kind (filled while it is paused).
2. What one job costs PostgreSQL and Redis: a batch of jobs through API and worker, each job
   then read once by status and once by result, against a private Redis (`redis-server` on a
   free port: its `INFO commandstats` sees nothing else) and the run's own database
   (`pg_stat_database` counters of that database, read after the processes exit, when their
   statistics are flushed).
3. What one PostgreSQL and one Redis carry here: the job table's write cycle (the API's INSERT,
   synchronous commit; the worker's claim and done, `synchronous_commit = off`) from 8
   connections for a few seconds; `redis-benchmark` on the private Redis (50 clients, no
   pipelining, the commands the service uses).

Run: `PYTHONPATH=project:. .venv/bin/python project/bench/capacity.py` (about two minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from devtools.launch import Child, free_port, start_api, start_worker, wait_for
from devtools.samples import encode, photo_like
from sqlalchemy import text

from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.jobs.repository import CLAIM_SQL, MARK_DONE_SQL
from imgproc.migrate import upgrade
from shared.settings import ServiceSettings, plain_postgres_url
from shared.testing.namespaces import new_run_id, temporary_database
from shared.testing.process import port_in_use

SIZES = {"1080p": (1920, 1080), "12 MP": (4000, 3000)}


def operation(op: str, w: int, h: int, i: int) -> tuple[str, dict[str, str]]:
    """The route and form of job `i` of one kind (parameters differ: a new job each)."""
    if op == "resize":
        return "/resize", {"width": str(w // 2 - i)}
    if op == "crop":
        return "/crop", {"left": str(i), "top": "0", "width": str(w // 2), "height": str(h // 2)}
    return "/grayscale", {}


OPERATIONS = ("resize", "grayscale", "crop")


@contextmanager
def private_redis(root: Path) -> Iterator[str]:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    child = Child("redis", [*args, "--appendonly", "no"], dict(os.environ), root / "redis.log")
    child.start().wait_until(lambda: port_in_use(port), timeout=15, what="listening")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop()


def wait_done(settings: Settings, total: int, what: str, timeout: float = 300) -> None:
    def finished() -> bool:
        return job_statuses(settings).get("done", 0) == total

    wait_for(finished, timeout=timeout, what=what, interval=0.02)


def job_statuses(settings: Settings) -> dict[str, int]:
    engine = make_sync_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM imgproc_jobs GROUP BY 1"))
            return {str(s): int(n) for s, n in rows}
    finally:
        engine.dispose()


def submit(client: httpx.Client, data: bytes, op: str, w: int, h: int, i: int) -> str:
    path, fields = operation(op, w, h, i)
    response = client.post(path, files={"file": ("a.jpg", data)}, data=fields)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def variants(w: int, h: int, count: int) -> list[bytes]:
    """`count` photos that differ in one pixel: different bytes, so never a de-duplicated job."""
    base = photo_like(w, h, seed=3)
    out = []
    for k in range(count):
        image = base.copy()
        image.putpixel((k % w, 0), (k % 256, 255 - k % 256, 0))
        out.append(encode(image, "JPEG", quality=90))
    return out


def throughput(
    settings: Settings, root: Path, jobs: dict[str, int]
) -> dict[tuple[str, str], float]:
    port = free_port()
    api = start_api(settings, root / "tp-api.log", port=port)
    worker = start_worker(settings, root / "tp-worker.log", pool="solo")
    out: dict[tuple[str, str], float] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            done = 0
            for size, (w, h) in SIZES.items():
                count = jobs[size]
                images = variants(w, h, count + 2)
                for op in OPERATIONS:
                    # Warm-up (two jobs), then fill while the worker is paused, then time it.
                    for i in range(2):
                        submit(client, images[count + i], op, w, h, 900 + i)
                    done += 2
                    wait_done(settings, done, "warm-up")
                    os.killpg(worker.pid, signal.SIGSTOP)
                    try:
                        for i in range(count):
                            submit(client, images[i], op, w, h, i)
                    finally:
                        os.killpg(worker.pid, signal.SIGCONT)
                    started = time.perf_counter()
                    done += count
                    wait_done(settings, done, "drain")
                    out[(size, op)] = count / (time.perf_counter() - started)
    finally:
        worker.stop()
        api.stop()
    return out


def pg_counters(database_url: str) -> dict[str, int]:
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(plain_postgres_url(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched"
            " FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return dict(zip(("commits", "inserted", "updated", "fetched"), map(int, row), strict=True))


def redis_calls(url: str) -> dict[str, int]:
    info: Any = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def per_job(settings: Settings, root: Path, jobs: int) -> dict[str, Any]:
    """PostgreSQL and Redis work of `jobs` jobs: submit, process, one status read, one result."""
    data = [encode(photo_like(64, 48, seed=s), "JPEG", quality=90) for s in range(jobs + 4)]
    port = free_port()
    api = start_api(settings, root / "pj-api.log", port=port)
    worker = start_worker(settings, root / "pj-worker.log", pool="solo")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    before = job_statuses(settings).get("done", 0)  # step 1's jobs, in the same table
    try:
        for i in range(4):  # warm-up: connections, caches
            submit(client, data[jobs + i], "grayscale", 64, 48, 0)
        wait_done(settings, before + 4, "warm-up")
        time.sleep(1.5)
        redis.Redis.from_url(settings.redis_url).config_resetstat()
        pg_before = pg_counters(settings.database_url)
        ids = [submit(client, data[i], "grayscale", 64, 48, 0) for i in range(jobs)]
        wait_done(settings, before + jobs + 4, "the batch")
        for task_id in ids:
            assert client.get(f"/task-status/{task_id}").status_code == 200
            assert client.get(f"/result/{task_id}").status_code == 200
        calls = redis_calls(settings.redis_url)
    finally:
        client.close()
        worker.stop()  # their statistics reach pg_stat_database when their sessions end
        api.stop()
    time.sleep(1.0)
    pg_after = pg_counters(settings.database_url)
    calls.pop("config", None)
    calls.pop("info", None)
    return {
        "pg": {k: (pg_after[k] - pg_before[k]) / jobs for k in pg_after},
        "redis": {k: v / jobs for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
    }


def pg_job_cycles(database_url: str, seconds: float, threads: int) -> float:
    """Jobs/s through the job table's write cycle: INSERT (synchronous), claim, done."""
    url = plain_postgres_url(database_url)
    count = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    insert = (
        "INSERT INTO imgproc_jobs (id, operation, params, status, request_key, input_sha256,"
        " input_format, input_bytes) VALUES (%s, 'grayscale', '{}', 'queued', %s, %s, 'jpeg', 1)"
    )

    def run() -> None:
        nonlocal count
        with (
            psycopg.connect(url, autocommit=True) as api,
            psycopg.connect(url, autocommit=True, options="-c synchronous_commit=off") as wrk,
        ):
            done = 0
            while time.monotonic() < stop:
                job = uuid.uuid4()
                api.execute(insert, (job, job.hex * 2, "0" * 64))
                params = {"job_id": job, "lease": 300.0, "takeover": False, "held": -1}
                wrk.execute(CLAIM_SQL, params).fetchone()
                wrk.execute(
                    MARK_DONE_SQL,
                    {"job_id": job, "attempt": 1, "sha256": "1" * 64, "format": "jpeg",
                     "width": 1, "height": 1},
                ).fetchone()  # fmt: skip
                done += 1
        with lock:
            count += done

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return count / seconds


def redis_ops(url: str) -> dict[str, float]:
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(
        ["redis-benchmark", "-p", port, "-c", "50", "-n", "100000", "-q",
         "-t", "set,get,lpush,rpop,incr"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        found = re.match(r"(\w+): ([\d.]+) requests per second", line.strip())
        if found:
            rates[found.group(1)] = float(found.group(2))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-1080p", type=int, default=40)
    parser.add_argument("--jobs-12mp", type=int, default=12)
    parser.add_argument("--batch", type=int, default=100, help="jobs for the per-job costs")
    parser.add_argument("--pg-seconds", type=float, default=8)
    args = parser.parse_args()
    print(f"imgproc capacity measurements ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"CPUs: {len(os.sched_getaffinity(0))})")  # fmt: skip
    base = ServiceSettings()
    with (
        tempfile.TemporaryDirectory(prefix="imgproc-capacity-") as tmp,
        temporary_database(base.database_url, new_run_id(), "_capacity") as url,
        private_redis(Path(tmp)) as redis_url,
    ):
        root = Path(tmp)
        upgrade(url)
        settings = Settings(
            database_url=url, redis_url=redis_url, redis_prefix="cap:", celery_queue="imgproc",
            data_dir=root / "data", worker_metrics_port=0, prometheus_multiproc_dir=None,
            max_queued_jobs=0, log_level="WARNING",
        )  # fmt: skip
        rates = throughput(settings, root, {"1080p": args.jobs_1080p, "12 MP": args.jobs_12mp})
        print("1) one worker process (--pool solo), jobs/s, by operation and photo size (JPEG q90)")
        print("   size     " + "".join(f"{op:>11}" for op in OPERATIONS))
        for size in SIZES:
            print(f"   {size:<8} " + "".join(f"{rates[(size, op)]:11.1f}" for op in OPERATIONS))
        costs = per_job(settings, root, args.batch)
        pg, rd = costs["pg"], costs["redis"]
        print(f"2) per job ({args.batch} jobs: submit, process, one status read, one result read)")
        print(
            f"   PostgreSQL: {pg['commits']:.2f} commits, {pg['inserted']:.2f} rows inserted,"
            f" {pg['updated']:.2f} rows updated, {pg['fetched']:.1f} rows fetched"
        )
        total = sum(rd.values())
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(rd.items())[:10])
        print(f"   Redis: {total:.1f} commands ({top})")
        cycles = pg_job_cycles(url, args.pg_seconds, threads=8)
        print(f"3) PostgreSQL: the job table's write cycle (INSERT, claim, done) from 8"
              f" connections: {cycles:.0f} jobs/s")  # fmt: skip
        ops = redis_ops(redis_url)
        print("   Redis (redis-benchmark, 50 clients, no pipelining): "
              + ", ".join(f"{k} {v:,.0f}/s" for k, v in ops.items()))  # fmt: skip


if __name__ == "__main__":
    main()
