"""`make bench-project`: the capstone's numbers, measured on this machine.

1. Pipeline throughput: N photos through API -> broker -> one worker process -> stored result,
   next to a plain Pillow loop doing the same operations on the same images in one process,
   timed in alternating short windows so that both sides see the same machine. Three photo
   sizes; the tiny one shows the pipeline's fixed cost per job, and a no-op Celery task shows
   how much of that is Celery's own message handling.
2. Submit path: our API next to a minimal upload-and-enqueue app (floor_app.py) and to that
   app keeping our promises the cheapest way, windows alternating, each upload a new 232 KB
   JPEG: throughput and API CPU per upload (devtools/submit_floor.py); then locust's latency
   percentiles at fixed request rates.
   No worker: the API alone is measured, jobs just queue up.
3. Cache: latency of a request answered by an identical earlier one vs a new job.
4. Two worker processes vs one, draining the same kind of queue in alternating rounds.

`--quick` runs every part smaller (about two minutes); `--only PART` runs one part.

Everything runs in a throw-away database and Redis prefix, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from devtools.launch import (
    Child,
    free_port,
    settings_env,
    start_api,
    start_worker,
    wait_for,
    worker_args,
)
from devtools.procstat import cpu_seconds
from devtools.samples import encode, photo_like
from devtools.submit_floor import Side, compare, ratio_by_thirds, start_floor
from sqlalchemy import Engine, text

from imgproc.celery_app import create_celery
from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.images.memory import keep_freed_memory
from imgproc.images.schemas import (
    CropParams,
    GrayscaleParams,
    Operation,
    OperationParams,
    ResizeParams,
)
from imgproc.images.service import process_image
from imgproc.jobs.processor import encode_options
from imgproc.migrate import upgrade
from shared.settings import ServiceSettings
from shared.testing.namespaces import delete_redis_prefix, new_run_id, temporary_database

BENCH_DIR = Path(__file__).resolve().parent
# The tasks of noop_worker.py (not imported: importing it builds a worker).
NOOP_TASK = "imgproc.bench.noop"
PLAIN_TASK = "imgproc.bench.plain"
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
    bases: int  # different base pictures

    def images(self, count: int, seed: int, row: int = 0) -> list[bytes]:
        """`count` different JPEGs (q90). Generating a photo is slow, so a few base pictures
        are made and each copy differs from its base by one pixel: a new job, the same work.
        Another `row` (the changed pixel's) gives a set of other jobs with the same work."""
        width, height = self.size
        bases = [photo_like(width, height, seed=seed + b) for b in range(min(count, self.bases))]
        out = []
        for i in range(count):
            base = bases[i % len(bases)]
            base.putpixel((i % width, row), (i % 256, 0, 255 - i % 256))
            out.append(encode(base, "JPEG", quality=90))
        return out

    def job(self, i: int) -> Job:
        return self.operations[i % len(self.operations)]


GRAYSCALE: Job = (Operation.GRAYSCALE, GrayscaleParams(), {})
WORKLOADS = [
    Workload(
        "1080p", (1920, 1080), [_resize(640, 360), GRAYSCALE, _crop(400, 200, 800, 600)], bases=24
    ),
    Workload(
        "12 MP", (4000, 3000), [_resize(1280, 960), GRAYSCALE, _crop(1600, 1200, 800, 600)], bases=1
    ),
    # Next to no Pillow work: the pipeline's rate here is its fixed cost per job.
    Workload("tiny", (64, 48), [_resize(32, 24), GRAYSCALE, _crop(8, 8, 32, 32)], bases=24),
    # One operation each: the cheap ones are where a fixed cost per job shows most.
    Workload("resize", (1920, 1080), [_resize(640, 360)], bases=24),
    Workload("grayscale", (1920, 1080), [GRAYSCALE], bases=24),
]
# Issue 14's targets, as ratios to the plain loop (the 12 MP one is for the mix).
TARGETS = {"resize": 0.85, "grayscale": 0.75, "12 MP": 0.93}


class PlainLoop:
    """The baseline: the same jobs on the same photos, one after another in this process.

    What any script would do with a folder of photos: read a file, process it with the same
    function the worker calls, write the result to a file. Timed in blocks (see `interleaved`).
    """

    def __init__(self, paths: list[Path], out_dir: Path, settings: Settings, workload: Workload):
        self.paths, self.out_dir, self.workload = paths, out_dir, workload
        self.options = encode_options(settings)
        self.max_pixels = settings.max_pixels
        self.next = 0
        self.reset()

    def reset(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self.cpu = 0.0
        self.blocks: list[tuple[int, float]] = []  # (images, seconds) of each run_for

    def run_for(self, seconds: float) -> None:
        """Process photos (cycling through them) until `seconds` have passed."""
        started, cpu, images = time.perf_counter(), time.process_time(), self.images
        while time.perf_counter() - started < seconds:
            i = self.next % len(self.paths)
            op, params, _ = self.workload.job(i)
            result = process_image(
                self.paths[i].read_bytes(),
                op,
                params,
                max_pixels=self.max_pixels,
                options=self.options,
            )
            # A new file per image, as a script over a folder writes (and as the worker does):
            # creating a file costs this VM's kernel 0.05-1.1 ms, overwriting one 0.3 ms.
            (self.out_dir / f"{self.next}.{result.format.lower()}").write_bytes(result.data)
            self.next += 1
            self.images += 1
        self.seconds += time.perf_counter() - started
        self.cpu += time.process_time() - cpu
        self.blocks.append((self.images - images, time.perf_counter() - started))

    @property
    def rate(self) -> float:
        return self.images / self.seconds


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


CACHE_IMAGE_SEED = 7  # the cache part's photo (1600x1200)


def cache_latency(
    base_url: str, count: int, api_pid: int
) -> tuple[list[float], list[float], float, float]:
    """Latencies of `count` new jobs, then of `count` identical repeats; and the API's CPU
    seconds per request of each kind (on a busy machine the steadier figure)."""
    image = encode(photo_like(1600, 1200, seed=CACHE_IMAGE_SEED), "JPEG", quality=90)
    misses = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        cpu = cpu_seconds(api_pid)
        for i in range(count):
            started = time.perf_counter()
            r = client.post(
                "/resize", files={"file": ("a.jpg", image)}, data={"width": str(50 + i)}
            )
            misses.append(time.perf_counter() - started)
            assert r.json()["cache_hit"] is False
        miss_cpu = (cpu_seconds(api_pid) - cpu) / count

    def is_hit(r: httpx.Response) -> None:
        assert r.json()["cache_hit"] is True

    hits, hit_cpu = repeat_latency(base_url, count, api_pid, check=is_hit)
    return misses, hits, miss_cpu, hit_cpu


def repeat_latency(
    base_url: str,
    count: int,
    pid: int,
    check: Callable[[httpx.Response], object] = httpx.Response.raise_for_status,
) -> tuple[list[float], float]:
    """Latencies of `count` identical uploads after a first one (the cache part's photo, width
    50), each answer passed to `check`; and the server's CPU seconds per request. Against our
    API these are cache hits; against a floor, what answering the same request costs there."""
    image = encode(photo_like(1600, 1200, seed=CACHE_IMAGE_SEED), "JPEG", quality=90)
    latencies = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post("/resize", files={"file": ("a.jpg", image)}, data={"width": "50"})
        cpu = cpu_seconds(pid)
        for _ in range(count):
            started = time.perf_counter()
            r = client.post("/resize", files={"file": ("a.jpg", image)}, data={"width": "50"})
            latencies.append(time.perf_counter() - started)
            check(r)
    return latencies, (cpu_seconds(pid) - cpu) / count


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300, help="1080p photos, pipeline part")
    parser.add_argument("--big-images", type=int, default=90, help="12 MP photos (0: skip)")
    parser.add_argument("--tiny-images", type=int, default=300, help="64x48 photos (0: skip)")
    parser.add_argument(
        "--op-images", type=int, default=150, help="1080p photos per single-operation row"
    )
    parser.add_argument("--noop-messages", type=int, default=2000, help="Celery floor (0: skip)")
    parser.add_argument(
        "--window", type=float, default=0.3, help="seconds per worker window / plain block"
    )
    parser.add_argument("--users", type=int, default=50, help="locust users")
    parser.add_argument("--seconds", type=int, default=20, help="locust run time")
    parser.add_argument(
        "--rates", default="0.5,1", help="requests/s per locust user, one run per value"
    )
    parser.add_argument("--cache-requests", type=int, default=100)
    parser.add_argument("--pool", default="solo", choices=["prefork", "solo"])
    parser.add_argument("--floor-rounds", type=int, default=6, help="submit vs floor: rounds")
    parser.add_argument("--floor-seconds", type=float, default=3.0, help="... seconds per window")
    parser.add_argument("--connections", type=int, default=16, help="... client connections")
    parser.add_argument("--scale-jobs", type=int, default=90, help="scaling: jobs per drain")
    parser.add_argument("--scale-rounds", type=int, default=2, help="scaling: rounds")
    parser.add_argument(
        "--only", choices=["pipeline", "submit", "locust", "cache", "scaling"], help="one part"
    )
    parser.add_argument("--quick", action="store_true", help="every part smaller (~2 minutes)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.big_images, args.tiny_images, args.op_images = 90, 12, 150, 60
        args.noop_messages, args.seconds, args.rates = 500, 8, "1"
        args.floor_rounds, args.floor_seconds, args.cache_requests = 3, 2.0, 20
        args.scale_jobs, args.scale_rounds = 45, 1

    # The worker keeps freed image memory (imgproc.images.memory); so does the plain loop here.
    keep_freed_memory()
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
            # As deployed: the worker writes its JSON line per job, and it costs CPU.
            log_level="INFO",
            # The submit parts queue thousands of jobs with no worker: shedding stays on (its
            # check is part of the cost) with a bound they never reach.
            max_queued_jobs=1_000_000,
        )
        try:
            upgrade(url)
            run(settings, root, args)
        finally:
            delete_redis_prefix(settings.redis_url, settings.redis_prefix)


def finished_at(engine: Engine, ids: list[uuid.UUID]) -> list[float]:
    """Finish times (epoch seconds, the database's clock) of the jobs of `ids` that are done.

    Raises if any of them failed: a drain that can never complete is a broken run.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, extract(epoch FROM finished_at) FROM imgproc_jobs"
                " WHERE id = ANY(:ids) AND status IN ('done', 'failed')"
            ),
            {"ids": ids},
        ).all()
    failed = sum(1 for status, _ in rows if status == "failed")
    if failed:
        raise RuntimeError(f"{failed} benchmark jobs failed; see the worker's log")
    return [float(t) for _, t in rows]


@dataclass
class DrainSide:
    """One worker draining its own queued jobs, in windows (see `interleaved`)."""

    name: str
    worker: Child
    jobs: int
    finishes: Callable[[], list[float]]  # finish times (epoch seconds) of its jobs done so far
    windows: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    blocks: list[int] = field(default_factory=list)  # the plain block right before each window
    done: bool = False

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.windows)

    def rate_by_thirds(self, finishes: list[float], plain: PlainLoop) -> list[float]:
        """This side's rate over the plain loop's in each third of its windows, each against
        the blocks that ran right before them."""
        thirds = []
        for part in range(3):
            first, last = part * len(self.windows) // 3, (part + 1) * len(self.windows) // 3
            windows = self.windows[first:last]
            jobs = sum(1 for t in finishes if any(a <= t <= b + 0.005 for a, b in windows))
            span = sum(b - a for a, b in windows)
            blocks = [plain.blocks[k] for k in self.blocks[first:last]]
            images, seconds = sum(n for n, _ in blocks), sum(t for _, t in blocks)
            if span and images:
                thirds.append((jobs / span) / (images / seconds))
        return thirds

    def plain_rate(self, plain: PlainLoop) -> float:
        """The plain loop's rate in the blocks paired with this side's windows."""
        blocks = [plain.blocks[k] for k in self.blocks]
        return sum(n for n, _ in blocks) / sum(t for _, t in blocks)


def interleaved(sides: list[DrainSide], plain: PlainLoop, window: float) -> None:
    """Drain each side's queued jobs in short windows, each window after a block of the plain
    loop, the sides taking turns: plain, side 1, plain, side 2, plain, side 1, ...

    A worker runs only inside its windows (SIGSTOP/SIGCONT on its process group) and the plain
    loop only outside them, so every side sees the same machine: this VM's speed drifts by up
    to 20 % within seconds, which a plain-before / pipeline / plain-after layout turns into
    noise in the ratio. Each side's windows and paired blocks are recorded on it.
    """
    rounds = 0
    while not all(side.done for side in sides):
        for side in sides:
            if side.done:
                continue
            plain.run_for(window)
            os.killpg(side.worker.pid, signal.SIGCONT)
            start = time.time()
            time.sleep(window)
            os.killpg(side.worker.pid, signal.SIGSTOP)
            side.windows.append((start, time.time()))
            side.blocks.append(len(plain.blocks) - 1)
            done = side.finishes()
            if len(done) == side.jobs:
                side.done = True
                # The last window ends at the last finish: after it the worker was idle.
                side.windows[-1] = (start, max(start, max(done)))
        rounds += 1
        if rounds > 10_000:
            raise TimeoutError("the pipeline did not finish")


def drain(
    settings: Settings,
    root: Path,
    args: argparse.Namespace,
    apis: dict[str, str],
    engine: Engine,
    workload: Workload,
    count: int,
) -> dict[str, Any]:
    """One workload drained by three workers in windows that take turns next to the plain loop:

    - `ours`: our queue, filled through our API, drained by our worker;
    - `promises`: the same work (photos one pixel apart) through the promises floor's API and
      worker (floor_worker.py);
    - `celery`: the plain loop's own photos and work as Celery messages (noop_worker.py's
      `plain` task: no database, no store), finish times from its output files.
    """
    images = workload.images(count, seed=1)
    in_dir, out_dir = root / f"plain-{workload.name}-in", root / f"plain-{workload.name}-out"
    celery_out = root / f"celery-{workload.name}-out"
    for directory in (in_dir, out_dir, celery_out):
        directory.mkdir()
    paths = []
    for i, data in enumerate(images):
        paths.append(in_dir / f"{i}.jpg")
        paths[-1].write_bytes(data)
    plain = PlainLoop(paths, out_dir, settings, workload)
    celery = celery_settings(settings)
    sender = create_celery(celery)

    def send_plain(first: int, last: int) -> None:
        for i in range(first, last):
            op, params, _ = workload.job(i)
            message = [str(paths[i]), str(celery_out / str(i)), op.value, params.model_dump()]
            sender.send_task(PLAIN_TASK, args=message, queue=celery.celery_queue)

    def celery_finishes() -> list[float]:
        return [entry.stat().st_mtime for entry in os.scandir(celery_out)]

    workers: dict[str, Child] = {}
    try:
        workers["ours"] = start_worker(
            settings, root / f"w-{workload.name}.log", concurrency=1, pool=args.pool
        )
        workers["promises"] = start_bench_worker(
            promises_settings(settings), root / f"pw-{workload.name}.log", "floor_worker", args.pool
        )
        workers["celery"] = start_bench_worker(
            celery, root / f"cw-{workload.name}.log", "noop_worker", args.pool
        )
        # Imports, connections, Pillow's first use, the allocator's heap growing to its working
        # size (two jobs of each operation): a worker runs for hours, the clock starts after that.
        for row, name in enumerate(("ours", "promises")):
            wait_finished(engine, submit_all(workload.images(6, 999, row), apis[name], workload))
        send_plain(0, 6)
        wait_for(lambda: len(celery_finishes()) == 6, timeout=60, what="warm-up", interval=0.01)
        for entry in os.scandir(celery_out):
            os.unlink(entry.path)  # (those photos are the first six of the run again)
        plain.run_for(0.2)
        plain.reset()
        # The workers are paused while the queues fill: then they only ever drain a full queue.
        for worker in workers.values():
            os.killpg(worker.pid, signal.SIGSTOP)
        ours_ids = submit_all(images, apis["ours"], workload)
        promise_ids = submit_all(workload.images(count, 1, row=1), apis["promises"], workload)
        send_plain(0, count)
        sides = [
            DrainSide("ours", workers["ours"], count, lambda: finished_at(engine, ours_ids)),
            DrainSide(
                "promises", workers["promises"], count, lambda: finished_at(engine, promise_ids)
            ),
            DrainSide("celery", workers["celery"], count, celery_finishes),
        ]
        cpu_before = {side.name: cpu_seconds(side.worker.pid) for side in sides}
        interleaved(sides, plain, args.window)
        cpu = {
            side.name: (cpu_seconds(side.worker.pid) - cpu_before[side.name]) / count
            for side in sides
        }
        for worker in workers.values():
            os.killpg(worker.pid, signal.SIGCONT)
        # The floor's jobs must really be done: its API reports them done and serves results.
        check_results(apis["promises"], promise_ids[:: max(1, count // 5)])
        result: dict[str, Any] = {
            "plain": plain.rate,
            "kb": sum(map(len, images)) / count / 1024,
            "plain_cpu": plain.cpu / plain.images,
        }
        for side in sides:
            result[side.name] = {
                "rate": count / side.seconds,
                "ratio": (count / side.seconds) / side.plain_rate(plain),
                "cpu": cpu[side.name],
                "thirds": side.rate_by_thirds(sorted(side.finishes()), plain),
                "plain": side.plain_rate(plain),
            }
        if workload is WORKLOADS[0]:
            # Uploads and processing at the same time, as clients would use it.
            live = wait_finished(
                engine, submit_all(workload.images(count, 5000), apis["ours"], workload)
            )
            result["live"] = count / live["end_to_end"]
            result["live_seconds"] = live["end_to_end"]
    finally:
        for worker in workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGCONT)
            worker.stop()
        sender.close()
    return result


def check_results(base_url: str, ids: list[uuid.UUID]) -> None:
    """Raise unless each job's status reads `done` and its result is an image."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for job_id in ids:
            status = client.get(f"/task-status/{job_id}").json()["status"]
            result = client.get(f"/result/{job_id}")
            if status != "done" or result.status_code != 200 or not result.content:
                raise RuntimeError(f"job {job_id}: status {status}, result {result.status_code}")


def celery_settings(settings: Settings) -> Settings:
    """Celery alone (noop_worker.py): our Redis and configuration, its own queue."""
    return settings.model_copy(update={"celery_queue": f"{settings.celery_queue}.celery"})


def promises_settings(settings: Settings) -> Settings:
    """The promises floor's API and worker: our database, store and Redis, its own queue."""
    return settings.model_copy(update={"celery_queue": f"{settings.celery_queue}.promises"})


def start_bench_worker(settings: Settings, log: Path, app: str, pool: str) -> Child:
    """A worker running one of this folder's Celery apps (noop_worker, floor_worker)."""
    env = settings_env(settings)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env["PYTHONPATH"]])
    args = worker_args(pool=pool)
    args[args.index("imgproc.worker")] = app
    worker = Child(app, args, env, log).start()
    return worker.wait_until(lambda: " ready." in worker.log_text(), timeout=30, what="ready")


def celery_floor(settings: Settings, root: Path, count: int, pool: str) -> tuple[float, float]:
    """(seconds, worker CPU seconds) per message for a worker draining `count` no-op messages
    (see noop_worker)."""
    sender = create_celery(settings)
    worker = start_bench_worker(settings, root / "noop-worker.log", "noop_worker", pool)
    client = redis.Redis.from_url(settings.redis_url)
    queue, unacked = (
        f"{settings.redis_prefix}{settings.celery_queue}",
        f"{settings.redis_prefix}unacked",
    )

    def drained() -> bool:
        return client.llen(queue) == 0 and client.hlen(unacked) == 0

    def send(n: int) -> None:
        for _ in range(n):
            sender.send_task(NOOP_TASK, args=[str(uuid.uuid4())], queue=settings.celery_queue)

    try:
        send(50)
        wait_for(drained, timeout=60, what="the warm-up messages", interval=0.005)
        os.killpg(worker.pid, signal.SIGSTOP)
        send(count)
        started, cpu = time.perf_counter(), cpu_seconds(worker.pid)
        os.killpg(worker.pid, signal.SIGCONT)
        wait_for(drained, timeout=120, what="the no-op messages", interval=0.002)
        seconds = time.perf_counter() - started
        return seconds / count, (cpu_seconds(worker.pid) - cpu) / count
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGCONT)
        worker.stop()
        client.close()
        sender.close()


def bench_pipeline(
    settings: Settings, root: Path, args: argparse.Namespace, base_url: str, engine: Engine
) -> None:
    print()
    print(
        f"1) Pipeline throughput: API -> Redis -> one worker process (--pool {args.pool}) ->"
        " stored result,"
    )
    print("   next to a plain Pillow loop (read file, same function, write file) on the same")
    print("   photos in one process. Two more workers with our Celery configuration drain the")
    print("   same work: `promises` (floor_worker.py: a job that only claims, reads, processes,")
    print("   stores and records, each the cheapest way; fed by an API of its own, photos one")
    print("   pixel apart) and `celery` (noop_worker.py: the plain loop's work as Celery messages,")
    print("   no database, no store). The queues are filled first; then the workers drain them")
    print(
        f"   in {args.window:.2f} s windows, taking turns, each after a {args.window:.2f} s block"
        " of the plain loop. Jobs: resize / grayscale / crop. Ratios: to the plain loop."
    )
    print(
        "   photos (JPEG q90)                 jobs  plain loop    pipeline  ratio  promises"
        "  celery  overhead/job   ratio by thirds"
    )
    counts = {
        "1080p": args.images,
        "12 MP": args.big_images,
        "tiny": args.tiny_images,
        "resize": args.op_images,
        "grayscale": args.op_images,
    }
    promise_port = free_port()
    promise_api = start_api(
        promises_settings(settings), root / "promises-api.log", port=promise_port
    )
    apis = {"ours": base_url, "promises": f"http://127.0.0.1:{promise_port}"}
    results = []
    try:
        for workload in WORKLOADS:
            count = counts[workload.name]
            if count <= 0:
                continue
            r = drain(settings, root, args, apis, engine, workload, count)
            results.append((workload, r))
            ours, kept, bare = r["ours"], r["promises"], r["celery"]
            overhead = 1000 / ours["rate"] - 1000 / ours["plain"]
            label = f"{workload.size[0]}x{workload.size[1]}, {r['kb']:.0f} KB"
            if len(workload.operations) == 1:
                label = f"1080p, {workload.name} only"
            thirds = " ".join(f"{t:.2f}" for t in ours["thirds"])
            target = TARGETS.get(workload.name)
            verdict = (
                ""
                if target is None
                else f"  (>= {target:.2f}: {'met' if ours['ratio'] >= target else 'NOT met'})"
            )
            print(
                f"   {workload.name:9} {label:22} {count:5} {r['plain']:7.1f}/s"
                f" {ours['rate']:9.1f}/s {ours['ratio']:6.2f} {kept['ratio']:8.2f}"
                f" {bare['ratio']:7.2f}  {overhead:6.1f} ms      {thirds}{verdict}"
            )
    finally:
        promise_api.stop()
    print(
        "   (targets: resize 1080p >= 0.85, grayscale 1080p >= 0.75, 12 MP >= 0.93 of the plain"
        " loop; overhead/job = 1/pipeline - 1/plain: for tiny photos, the pipeline's fixed cost"
        " per job)"
    )
    if args.noop_messages > 0:
        floor, floor_cpu = celery_floor(settings, root, args.noop_messages, args.pool)
        print(
            f"   Celery alone (a no-op task, same configuration, {args.pool}): {1 / floor:.0f}"
            f" messages/s, {floor * 1000:.2f} ms per message ({floor_cpu * 1000:.2f} ms of worker"
            " CPU)"
        )
        for workload, r in results:
            if workload.name != "tiny":
                continue
            for name in ("ours", "promises", "celery"):
                side = r[name]
                beyond = 1 / side["rate"] - 1 / side["plain"] - floor
                beyond_cpu = side["cpu"] - r["plain_cpu"] - floor_cpu
                print(
                    f"   Fixed cost per job beyond Celery's floor, {name + ':':9}"
                    f" {beyond * 1000:5.2f} ms of time, {beyond_cpu * 1000:5.2f} ms of worker CPU"
                )
            print(
                "   (tiny photos: the worker's time per job minus the plain loop's, minus the"
                " no-op task's; target for ours <= 1 ms)"
            )
    for workload, r in results:
        ours, kept, bare = r["ours"], r["promises"], r["celery"]
        print(
            f"   {workload.name}: CPU per image: plain {r['plain_cpu'] * 1000:.1f} ms, worker"
            f" {ours['cpu'] * 1000:.1f} ms, promises {kept['cpu'] * 1000:.1f} ms, celery"
            f" {bare['cpu'] * 1000:.1f} ms (all their threads) -> CPU efficiency"
            f" {r['plain_cpu'] / ours['cpu']:.2f} (promises {r['plain_cpu'] / kept['cpu']:.2f},"
            f" celery {r['plain_cpu'] / bare['cpu']:.2f})"
        )
    for workload, r in results:
        if "live" in r:
            print(
                f"   {workload.name}: end to end with uploads concurrent: {r['live']:.1f} images/s"
                f" (first upload to last result, {r['live_seconds']:.2f} s)"
            )


def bench_locust(settings: Settings, root: Path, args: argparse.Namespace, base_url: str) -> None:
    kb = len(encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)) // 1024
    print()
    print(
        f"   Latency: locust headless, {args.users} users, {args.seconds} s per load level, "
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


def bench_submit_floor(
    settings: Settings, root: Path, args: argparse.Namespace, api: Child, port: int
) -> None:
    jpeg = encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)
    floor_port, promise_port, features_port = free_port(), free_port(), free_port()
    floor = start_floor(settings, root / "floor.log", port=floor_port)
    promise = start_floor(settings, root / "promise.log", port=promise_port, guarantees=True)
    featured = start_floor(settings, root / "features.log", port=features_port, features=True)
    try:
        ours = Side("ours", port, api.pid, cpu_seconds)
        base = Side("floor", floor_port, floor.pid, cpu_seconds)
        kept = Side("promises", promise_port, promise.pid, cpu_seconds)
        full = Side("features", features_port, featured.pid, cpu_seconds)
        compare(
            [ours, base, kept, full],
            jpeg,
            rounds=args.floor_rounds,
            seconds=args.floor_seconds,
            connections=args.connections,
        )
    except Exception:
        for child in (api, floor, promise, featured):
            print(f"--- {child.name}'s last log lines:\n{child.log_tail(15)}", file=sys.stderr)
        raise
    finally:
        floor.stop()
        promise.stop()
        featured.stop()
    print()
    print("2) Submit path: our API vs the floor (floor_app.py: FastAPI saves the bytes under a")
    print("   random name, sends a stock Celery task; no validation, fsync, database, cache) and")
    print("   vs the floor with our promises kept the cheapest way (`promises`: size limit, sha256")
    print("   name, header check, fsync + rename, on raw asyncpg BEGIN, our INSERT with the blob's")
    print("   lock and de-duplication, a stat, COMMIT, a failed request's blob deleted; the task")
    print("   sent as our API sends it: one LPUSH), and vs that plus our API's features per")
    print("   upload, each the cheapest way (`features`: request id, the twin looked up in")
    print("   Redis, the new job's cache entries, the shedding check, Prometheus metrics, a JSON")
    print("   log line).")
    print(
        f"   One uvicorn process each, {args.connections} keep-alive connections, closed loop,"
        f" {args.floor_rounds} rounds of {args.floor_seconds:g} s"
    )
    print(
        f"   windows alternating (ours, floor, promises, features); each POST /resize a new"
        f" {len(jpeg) // 1024} KB JPEG (unique bytes), a new job; no worker."
    )
    print("              answers  requests/s  API CPU per upload  failures")
    for side in (ours, base, kept, full):
        cpu_ms = side.cpu_per_request * 1000
        print(
            f"   {side.name:8} {side.answers:9} {side.rate:10.1f}/s {cpu_ms:12.2f} ms"
            f" {side.failures:9}"
        )
    for name, side in (("ours", ours), ("promises", kept), ("features", full)):
        thirds = " ".join(f"{t:.2f}" for t in ratio_by_thirds(side, base))
        print(
            f"   {name} / floor: throughput {side.rate / base.rate:.2f} (by thirds: {thirds}),"
            f" CPU per upload {side.cpu_per_request / base.cpu_per_request:.2f}x"
        )
    for name, side in (("promises", kept), ("features", full)):
        thirds = " ".join(f"{t:.2f}" for t in ratio_by_thirds(ours, side))
        print(f"   ours / {name}: throughput {ours.rate / side.rate:.2f} (by thirds: {thirds})")
    print("   (targets: API CPU per upload <= 3 ms; throughput >= 0.80 of the floor's)")
    print("   (floor -> promises: the guarantees' share; promises -> features: our features';")
    print("   features -> ours: our layers' (FastAPI dependencies, SQLAlchemy, structlog, ...))")


def bench_scaling(
    settings: Settings, root: Path, args: argparse.Namespace, base_url: str, engine: Engine
) -> None:
    """Two worker processes vs one on the same kind of queue, rounds alternating."""
    workload = WORKLOADS[0]
    workers = [
        start_worker(settings, root / f"scale-{i}.log", concurrency=1, pool=args.pool)
        for i in range(2)
    ]
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        # Warm-up: each worker runs a few jobs of each operation before the clock starts.
        wait_finished(engine, submit_all(workload.images(12, seed=7000), base_url, workload))
        for worker in workers:
            os.killpg(worker.pid, signal.SIGSTOP)
        seed = 8000
        for _ in range(args.scale_rounds):
            for count in (1, 2):
                ids = submit_all(workload.images(args.scale_jobs, seed=seed), base_url, workload)
                seed += args.scale_jobs
                started = time.time()
                for worker in workers[:count]:
                    os.killpg(worker.pid, signal.SIGCONT)
                wait_finished(engine, ids)
                finished = max(finished_at(engine, ids))
                for worker in workers[:count]:
                    os.killpg(worker.pid, signal.SIGSTOP)
                rates[count].append(len(ids) / (finished - started))
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGCONT)
            worker.stop()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    pairs = " ".join(f"{b / a:.2f}" for a, b in zip(rates[1], rates[2], strict=True))
    print()
    print(
        f"4) Scaling: {args.scale_jobs} queued {workload.name} jobs (resize / grayscale / crop)"
        f" drained by one worker process, then by two (--pool {args.pool} each),"
        f" {args.scale_rounds} rounds alternating"
    )
    print(
        f"   one worker {one:.1f} jobs/s, two workers {two:.1f} jobs/s (medians): {two / one:.2f}x"
        f" (each round: {pairs}); target >= 1.70x"
    )
    print(
        f"   CPUs this process may use: {len(os.sched_getaffinity(0))}; load average"
        f" {os.getloadavg()[0]:.1f} (others' work takes cores from the workers too)"
    )


def bench_cache(
    settings: Settings, root: Path, args: argparse.Namespace, base_url: str, api: Child
) -> None:
    misses, hits, miss_cpu, hit_cpu = cache_latency(base_url, args.cache_requests, api.pid)
    # The same client against the floors: what answering this upload at all costs here.
    floor_port, features_port = free_port(), free_port()
    floor = start_floor(settings, root / "floor-cache.log", port=floor_port)
    featured = start_floor(settings, root / "features-cache.log", port=features_port, features=True)
    try:
        plain, plain_cpu = repeat_latency(
            f"http://127.0.0.1:{floor_port}", args.cache_requests, floor.pid
        )
        twin, twin_cpu = repeat_latency(
            f"http://127.0.0.1:{features_port}", args.cache_requests, featured.pid
        )
    finally:
        floor.stop()
        featured.stop()
    print()
    print(
        f"3) Cache: {args.cache_requests} new jobs vs {args.cache_requests} identical "
        "repeats (same 1600x1200 JPEG)"
    )
    rows = [
        ("miss (new job)", misses, miss_cpu),
        ("hit (existing job)", hits, hit_cpu),
        ("features floor, hit", twin, twin_cpu),
        ("floor, any upload", plain, plain_cpu),
    ]
    for label, values, cpu in rows:
        print(
            f"   {label:21} p50 {ms(values, 0.5):>6} ms   p95 {ms(values, 0.95):>6} ms"
            f"   API CPU {cpu * 1000:5.2f} ms per request"
        )
    print(f"   speed-up at p50       {statistics.median(misses) / statistics.median(hits):.1f}x")
    print("   (target: hit p50 <= 2 ms; the floor's row: the minimal app saving this upload and")
    print("   sending a task, with the same client; the features floor's: a repeat answered from")
    print("   Redis by a server with no framework layers of ours)")


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
        if args.only in (None, "submit"):
            bench_submit_floor(settings, root, args, api, port)
        if args.only in (None, "locust"):
            bench_locust(settings, root, args, base_url)
        if args.only in (None, "cache"):
            bench_cache(settings, root, args, base_url, api)
        if args.only in (None, "scaling"):
            bench_scaling(settings, root, args, base_url, engine)
    finally:
        api.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
