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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

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
Job = tuple[Operation, OperationParams, dict[str, str]]  # what to do, and its form fields


def _crop(left: int, top: int, width: int, height: int) -> Job:
    fields = {"left": left, "top": top, "width": width, "height": height}
    return (Operation.CROP, CropParams(**fields), {k: str(v) for k, v in fields.items()})


def _resize(width: int, height: int) -> Job:
    return (
        Operation.RESIZE,
        ResizeParams(width=width, height=height),
        {"width": str(width), "height": str(height)},
    )


@dataclass(frozen=True)
class Workload:
    """Photos of one size, each with one of three operations in turn."""

    name: str
    size: tuple[int, int]
    operations: list[Job]

    def images(self, count: int, seed: int) -> list[bytes]:
        """`count` different JPEGs (q90). Big ones share a base picture: generating is slow."""
        width, height = self.size
        if width * height <= 4_000_000:
            return [
                encode(photo_like(width, height, seed=seed + i), "JPEG", quality=90)
                for i in range(count)
            ]
        base = photo_like(width, height, seed=seed)
        out = []
        for i in range(count):
            # One different pixel makes different bytes: a new job, the same work.
            base.putpixel((i % width, 0), (i % 256, 0, 255 - i % 256))
            out.append(encode(base, "JPEG", quality=90))
        return out

    def job(self, i: int) -> Job:
        return self.operations[i % len(self.operations)]


GRAYSCALE: Job = (Operation.GRAYSCALE, GrayscaleParams(), {})
WORKLOADS = [
    Workload("1080p", (1920, 1080), [_resize(640, 360), GRAYSCALE, _crop(400, 200, 800, 600)]),
    Workload("12 MP", (4000, 3000), [_resize(1280, 960), GRAYSCALE, _crop(1600, 1200, 800, 600)]),
]

PLAIN_CPU: list[float] = []  # CPU seconds per image of each plain loop


def plain_loop(images: list[bytes], settings: Settings, workload: Workload, first: int) -> float:
    """Images per second of the same work in one process, no service around it."""
    started, cpu = time.perf_counter(), time.process_time()
    for i, data in enumerate(images, start=first):
        op, params, _ = workload.job(i)
        process_image(data, op, params, max_pixels=settings.max_pixels)
    PLAIN_CPU.append((time.process_time() - cpu) / len(images))
    return len(images) / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid` and its live children, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def submit_all(images: list[bytes], base_url: str, workload: Workload) -> list[uuid.UUID]:
    """POST every image (4 client threads, keep-alive); return the task ids."""
    local = threading.local()

    def submit(i: int) -> uuid.UUID:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=60)
        op, _, fields = workload.job(i)
        response = local.client.post(
            f"/{op.value}", files={"file": ("p.jpg", images[i], "image/jpeg")}, data=fields
        )
        response.raise_for_status()
        return uuid.UUID(response.json()["task_id"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(submit, range(len(images))))


def wait_finished(
    engine: Engine, ids: list[uuid.UUID], after: list[uuid.UUID] | None = None
) -> dict[str, float]:
    """Wait until every job is done; return time spans from the job rows.

    `processing` runs from the first start of `ids` (or from the last finish of the `after`
    jobs, processed before them) to the last finish of `ids`.
    """
    ids = [*(after or []), *ids]

    def finished() -> bool:
        with engine.connect() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM imgproc_jobs WHERE id = ANY(:ids) AND status = 'done'"),
                {"ids": ids},
            ).scalar_one()
        return bool(done == len(ids))

    wait_for(finished, timeout=600, what="the pipeline to finish", interval=0.05)
    measured = ids[len(after or []) :]
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT extract(epoch FROM max(finished_at) - min(created_at)) AS end_to_end,"
                " extract(epoch FROM max(finished_at) - coalesce("
                "   (SELECT max(finished_at) FROM imgproc_jobs WHERE id = ANY(:after)),"
                "   min(started_at)"
                " )) AS processing"
                " FROM imgproc_jobs WHERE id = ANY(:ids)"
            ),
            {"ids": measured, "after": after or []},
        ).one()
    return {"end_to_end": float(row.end_to_end), "processing": float(row.processing)}


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
    raise RuntimeError(f"locust made no /resize request; see {prefix}_stats.csv")


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
    parser.add_argument("--images", type=int, default=120, help="1080p photos, pipeline part")
    parser.add_argument("--big-images", type=int, default=30, help="12 MP photos (0: skip)")
    parser.add_argument("--users", type=int, default=50, help="locust users")
    parser.add_argument("--seconds", type=int, default=20, help="locust run time")
    parser.add_argument(
        "--rates", default="0.5,1", help="requests/s per locust user, one run per value"
    )
    parser.add_argument("--cache-requests", type=int, default=30)
    parser.add_argument("--pool", default="solo", choices=["prefork", "solo"])
    parser.add_argument("--only", choices=["pipeline", "locust", "cache"], help="run one part")
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


def drain(
    settings: Settings,
    root: Path,
    args: argparse.Namespace,
    base_url: str,
    engine: Engine,
    workload: Workload,
    count: int,
) -> dict[str, float]:
    """One workload: plain loop, then the queue filled through the API and drained by a worker."""
    images = workload.images(count, seed=1)
    worker = start_worker(settings, root / "w0.log", concurrency=1, pool=args.pool)
    try:
        warm = workload.images(3, seed=999)
        wait_finished(engine, submit_all(warm, base_url, workload))  # imports, connections
        plain_before = plain_loop(images[: count // 2], settings, workload, 0)
        # The queue is filled through the API first, then one worker drains it: the sustained
        # rate of broker -> claim -> read -> process -> store -> record.
        worker.stop()
        # The first jobs of a fresh worker pay for its start-up (imports, connections):
        # three warm-up jobs go first and the clock starts when the last of them is done.
        warm_ids = submit_all(workload.images(3, seed=1999), base_url, workload)
        ids = submit_all(images, base_url, workload)
        worker = start_worker(settings, root / "w1.log", concurrency=1, pool=args.pool)
        drained = wait_finished(engine, ids, after=warm_ids)
        plain_after = plain_loop(images[count // 2 :], settings, workload, count // 2)
        result = {
            "plain_before": plain_before,
            "plain_after": plain_after,
            "plain": (plain_before + plain_after) / 2,
            "pipeline": count / drained["processing"],
            "kb": sum(map(len, images)) / count / 1024,
        }
        if workload is WORKLOADS[0]:
            # Uploads and processing at the same time, as clients would use it.
            fresh = workload.images(count, seed=5000)
            cpu_before = cpu_seconds(worker.pid)
            live = wait_finished(engine, submit_all(fresh, base_url, workload))
            result["plain_cpu"] = (PLAIN_CPU[-1] + PLAIN_CPU[-2]) / 2
            result["worker_cpu"] = (cpu_seconds(worker.pid) - cpu_before) / count
            result["live"] = count / live["end_to_end"]
            result["live_seconds"] = live["end_to_end"]
    finally:
        worker.stop()
    return result


def bench_pipeline(
    settings: Settings, root: Path, args: argparse.Namespace, base_url: str, engine: Engine
) -> None:
    print()
    print(
        f"1) Pipeline throughput: API -> Redis -> one worker process (--pool {args.pool}) ->"
        " stored result,"
    )
    print("   next to a plain Pillow loop doing the same jobs on the same photos in one process.")
    print("   The queue is filled through the API, then drained. Jobs: resize / grayscale / crop.")
    print("   photos (JPEG q90)             jobs  plain loop    pipeline  ratio  overhead/job")
    counts = {"1080p": args.images, "12 MP": args.big_images}
    results = []
    for workload in WORKLOADS:
        count = counts[workload.name]
        if count <= 0:
            continue
        r = drain(settings, root, args, base_url, engine, workload, count)
        results.append((workload, r))
        overhead = 1000 / r["pipeline"] - 1000 / r["plain"]
        label = f"{workload.size[0]}x{workload.size[1]}, {r['kb']:.0f} KB"
        print(
            f"   {workload.name:5} {label:22} {count:5} {r['plain']:7.1f}/s {r['pipeline']:9.1f}/s"
            f" {r['pipeline'] / r['plain']:6.2f}  {overhead:6.1f} ms"
            f"   (plain before {r['plain_before']:.1f}, after {r['plain_after']:.1f})"
        )
    print("   (target: ratio >= 0.90; overhead/job = 1/pipeline - 1/plain)")
    for workload, r in results:
        if "worker_cpu" in r:
            print(
                f"   {workload.name}: CPU per image: plain {r['plain_cpu'] * 1000:.1f} ms, worker"
                f" {r['worker_cpu'] * 1000:.1f} ms (all its threads) -> CPU efficiency"
                f" {r['plain_cpu'] / r['worker_cpu']:.2f}"
            )
            print(
                f"   {workload.name}: end to end with uploads concurrent: {r['live']:.1f} images/s"
                f" (first upload to last result, {r['live_seconds']:.2f} s)"
            )


def bench_locust(settings: Settings, root: Path, args: argparse.Namespace, base_url: str) -> None:
    kb = len(encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)) // 1024
    print()
    print(
        f"2) Submit path: locust headless, {args.users} users, {args.seconds} s per load level, "
        f"POST /resize with a {kb} KB JPEG, a new job each (API alone, worker stopped)"
    )
    print("   per user    offered   achieved  failures    p50    p95    p99    max  (ms)")
    warm = encode(photo_like(1600, 1200, seed=43), "JPEG", quality=90)
    with httpx.Client(base_url=base_url, timeout=30) as client:  # connections, caches
        for width in range(5):
            client.post("/resize", files={"file": ("w.jpg", warm)}, data={"width": str(width + 1)})
    for rate in (float(r) for r in args.rates.split(",")):
        row = locust_run(base_url, settings, args.users, args.seconds, rate, root)
        print(
            f"   {rate:5.2f}/s {args.users * rate:7.0f}/s {float(row['Requests/s']):8.1f}/s"
            f" {row['Failure Count']:>9} {row['50%']:>6} {row['95%']:>6} {row['99%']:>6}"
            f" {float(row['Max Response Time']):6.0f}"
        )
    print("   (target: p99 < 100 ms)")


def bench_cache(args: argparse.Namespace, base_url: str) -> None:
    misses, hits = cache_latency(base_url, args.cache_requests)
    print()
    print(
        f"3) Cache: {args.cache_requests} new jobs vs {args.cache_requests} identical "
        "repeats (same 1600x1200 JPEG)"
    )
    print(f"   miss (new job)        p50 {ms(misses, 0.5):>6} ms   p95 {ms(misses, 0.95):>6} ms")
    print(f"   hit (existing job)    p50 {ms(hits, 0.5):>6} ms   p95 {ms(hits, 0.95):>6} ms")
    print(f"   speed-up at p50       {statistics.median(misses) / statistics.median(hits):.1f}x")


def run(settings: Settings, root: Path, args: argparse.Namespace) -> None:
    print(
        f"imgproc benchmark ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"CPUs: {len(os.sched_getaffinity(0))})"
    )
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    engine = make_sync_engine(settings.database_url)
    api = start_api(settings, root / "api.log", port=port)
    try:
        if args.only in (None, "pipeline"):
            bench_pipeline(settings, root, args, base_url, engine)
        if args.only in (None, "locust"):
            bench_locust(settings, root, args, base_url)
        if args.only in (None, "cache"):
            bench_cache(args, base_url)
    finally:
        api.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
