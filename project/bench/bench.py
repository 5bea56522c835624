"""`make bench-project`: the capstone's numbers, measured on this machine.

1. Pipeline throughput: N photos through API -> broker -> one worker process -> stored result,
   next to a plain Pillow loop doing the same operations on the same images in one process.
2. Submit path: locust, headless, POST /resize with a ~200 KB JPEG (worker stopped: the API
   alone is measured, jobs just queue up).
3. Cache: latency of a request answered by an identical earlier one vs a new job.

Everything runs in a throw-away database and Redis prefix, removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import text

from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.images.schemas import (
    CropParams,
    GrayscaleParams,
    Operation,
    OperationParams,
    ResizeParams,
)
from imgproc.images.service import process_image
from imgproc.launch import free_port, settings_env, start_api, start_worker, wait_for
from imgproc.migrate import upgrade
from imgproc.samples import encode, photo_like
from shared.settings import ServiceSettings
from shared.testing.namespaces import delete_redis_prefix, new_run_id, temporary_database

BENCH_DIR = Path(__file__).resolve().parent
OPERATIONS: list[tuple[Operation, OperationParams, dict[str, str]]] = [
    (Operation.RESIZE, ResizeParams(width=640, height=360), {"width": "640", "height": "360"}),
    (Operation.GRAYSCALE, GrayscaleParams(), {}),
    (
        Operation.CROP,
        CropParams(left=400, top=200, width=800, height=600),
        {"left": "400", "top": "200", "width": "800", "height": "600"},
    ),
]


def plain_loop(images: list[bytes], settings: Settings) -> float:
    """Images per second of the same work in one process, no service around it."""
    started = time.perf_counter()
    for i, data in enumerate(images):
        op, params, _ = OPERATIONS[i % len(OPERATIONS)]
        process_image(data, op, params, max_pixels=settings.max_pixels)
    return len(images) / (time.perf_counter() - started)


def pipeline(images: list[bytes], base_url: str, settings: Settings) -> tuple[float, float]:
    """Submit every image, wait for all results; return (images/s, seconds)."""
    engine = make_sync_engine(settings.database_url)

    def submit(i: int) -> str:
        op, _, fields = OPERATIONS[i % len(OPERATIONS)]
        with httpx.Client(base_url=base_url, timeout=60) as client:
            response = client.post(
                f"/{op.value}", files={"file": ("p.jpg", images[i], "image/jpeg")}, data=fields
            )
        response.raise_for_status()
        return str(response.json()["task_id"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = [uuid.UUID(i) for i in pool.map(submit, range(len(images)))]

    def finished() -> bool:
        with engine.connect() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'done'"),
                {"ids": ids},
            ).scalar_one()
        return bool(done == len(ids))

    wait_for(finished, timeout=600, what="the pipeline to finish", interval=0.05)
    with engine.connect() as conn:
        seconds = conn.execute(
            text(
                "SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM jobs "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).scalar_one()
    engine.dispose()
    return len(ids) / float(seconds), float(seconds)


def locust_run(
    base_url: str, settings: Settings, users: int, seconds: int, rate: float, out: Path
) -> dict[str, str]:
    prefix = out / "locust"
    env = settings_env(settings, {"BENCH_USER_RATE": str(rate)})
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(BENCH_DIR / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--host",
            base_url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=seconds + 60,
    )
    with open(f"{prefix}_stats.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "/resize":
                return row
    raise RuntimeError("locust wrote no /resize row")


def cache_latency(base_url: str, count: int) -> tuple[list[float], list[float]]:
    image = encode(photo_like(1600, 1200, seed=7), "JPEG", quality=90)
    misses, hits = [], []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(count):
            started = time.perf_counter()
            r = client.post(
                "/resize", files={"file": ("a.jpg", image)}, data={"width": str(50 + i)}
            )
            misses.append(time.perf_counter() - started)
            assert r.json()["cache_hit"] is False
        for _ in range(count):
            started = time.perf_counter()
            r = client.post("/resize", files={"file": ("a.jpg", image)}, data={"width": "50"})
            hits.append(time.perf_counter() - started)
            assert r.json()["cache_hit"] is True
    return misses, hits


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=60, help="images through the pipeline")
    parser.add_argument("--users", type=int, default=50, help="locust users")
    parser.add_argument("--seconds", type=int, default=20, help="locust run time")
    parser.add_argument("--rate", type=float, default=2.0, help="requests/s per locust user")
    parser.add_argument("--cache-requests", type=int, default=30)
    args = parser.parse_args()

    run_id = new_run_id()
    base = ServiceSettings()
    with (
        tempfile.TemporaryDirectory(prefix="imgproc-bench-") as tmp,
        temporary_database(base.database_url, run_id, "_bench") as url,
    ):
        root = Path(tmp)
        settings = Settings(
            database_url=url,
            redis_prefix=f"hl_bench:{run_id}:",
            celery_queue="imgproc.bench",
            data_dir=root / "data",
            worker_metrics_port=0,
            prometheus_multiproc_dir=None,
            log_level="WARNING",
        )
        try:
            upgrade(url)
            run(settings, root, args)
        finally:
            delete_redis_prefix(settings.redis_url, settings.redis_prefix)


def run(settings: Settings, root: Path, args: argparse.Namespace) -> None:
    print(
        f"imgproc benchmark ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"CPUs: {len(os.sched_getaffinity(0))})"
    )
    images = [
        encode(photo_like(1920, 1080, seed=i), "JPEG", quality=90) for i in range(args.images)
    ]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = start_api(settings, root / "api.log", port=port)
    try:
        worker = start_worker(settings, root / "worker.log", concurrency=1)
        try:
            warm = encode(photo_like(1920, 1080, seed=999), "JPEG")
            pipeline([warm], base_url, settings)  # connections, imports, caches
            rate_plain = plain_loop(images, settings)
            rate_pipe, seconds = pipeline(images, base_url, settings)
        finally:
            worker.stop()
        print()
        print(
            f"1) Pipeline throughput: {len(images)} JPEGs 1920x1080, "
            "resize 640x360 / grayscale / crop 800x600"
        )
        print(f"   plain Pillow loop, one process      {rate_plain:7.1f} images/s")
        print(
            f"   API -> Redis -> 1 worker -> result   {rate_pipe:7.1f} images/s  ({seconds:.2f} s)"
        )
        print(
            f"   ratio pipeline / plain              {rate_pipe / rate_plain:7.2f}"
            "  (target >= 0.90)"
        )

        row = locust_run(base_url, settings, args.users, args.seconds, args.rate, root)
        print()
        kb = len(encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)) // 1024
        print(
            f"2) Submit path: locust, {args.users} users x {args.rate:g} req/s each, "
            f"{args.seconds} s, POST /resize with a {kb} KB JPEG (API alone, worker stopped)"
        )
        print(
            f"   requests {row['Request Count']}, failures {row['Failure Count']}, "
            f"{float(row['Requests/s']):.1f} req/s"
        )
        print(
            f"   latency ms: p50 {row['50%']}, p95 {row['95%']}, p99 {row['99%']}, "
            f"max {float(row['Max Response Time']):.0f}  (target p99 < 100)"
        )

        misses, hits = cache_latency(base_url, args.cache_requests)
        print()
        print(
            f"3) Cache: {args.cache_requests} new jobs vs {args.cache_requests} identical "
            "repeats (same 1600x1200 JPEG)"
        )
        print(
            f"   miss (new job)        p50 {ms(misses, 0.5):>6} ms   p95 {ms(misses, 0.95):>6} ms"
        )
        print(f"   hit (existing job)    p50 {ms(hits, 0.5):>6} ms   p95 {ms(hits, 0.95):>6} ms")
        print(
            f"   speed-up at p50       {statistics.median(misses) / statistics.median(hits):.1f}x"
        )
    finally:
        api.stop()


if __name__ == "__main__":
    main()
