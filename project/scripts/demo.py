"""`make demo`: start the service, process one sample image per operation, show the results.

Migrates the database, starts the worker (with the reconciler) and the API as child processes,
submits generated sample images (each operation, then an identical repeat to show the cache, then
a decompression bomb to show a refusal), waits, saves the results under project/var/demo/, prints
a table and stops everything it started, also on failure or Ctrl-C.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from devtools.launch import checkout_isolated, free_port, service_stack, wait_for
from devtools.samples import encode, photo_like, png_bomb
from rich.console import Console
from rich.table import Table

from imgproc.config import VAR_DIR, Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

OUT_DIR = VAR_DIR / "demo"


@dataclass
class Row:
    label: str
    operation: str
    task_id: str | None
    submitted: float
    cache_hit: bool
    http_status: int
    status: str = ""
    total_ms: float = 0.0
    processing_ms: float = 0.0
    size: str = ""
    output: str = ""
    answer_ms: float = 0.0


def submit(client: httpx.Client, label: str, op: str, data: bytes, name: str, **fields: str) -> Row:
    started = time.perf_counter()
    response = client.post(f"/{op}", files={"file": (name, data)}, data=fields)
    body = response.json()
    if response.status_code >= 400:
        return Row(
            label,
            op,
            None,
            started,
            False,
            response.status_code,
            status=body["error"]["code"],
            output=body["error"]["message"],
        )
    row = Row(label, op, body["task_id"], started, body["cache_hit"], response.status_code)
    row.answer_ms = (time.perf_counter() - started) * 1000
    return row


def finish(client: httpx.Client, row: Row) -> None:
    if row.task_id is None:
        return
    status: dict[str, object] = {}

    def final() -> bool:
        nonlocal status
        status = client.get(f"/task-status/{row.task_id}").json()
        return status["status"] in ("done", "failed")

    wait_for(final, timeout=60, what=f"task {row.task_id}", interval=0.05)
    row.status = str(status["status"])
    created, started, finished = (
        datetime.fromisoformat(str(status[k])) for k in ("created_at", "started_at", "finished_at")
    )
    # Server-side timestamps: the time to answer this job, not the time this script polled.
    row.total_ms = (finished - created).total_seconds() * 1000
    row.processing_ms = (finished - started).total_seconds() * 1000
    if row.status != "done":
        row.output = str(status["error"])
        return
    result = client.get(f"/result/{row.task_id}")
    ext = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}[
        result.headers["content-type"]
    ]
    path = OUT_DIR / f"{row.label.replace(' ', '-')}.{ext}"
    path.write_bytes(result.content)
    output = status["output"]
    assert isinstance(output, dict)
    row.size = f"{output['width']}x{output['height']}"
    row.output = str(path.relative_to(VAR_DIR.parent.parent))


def main() -> None:
    console = Console(width=max(110, Console().width))
    # This checkout's own database, Redis prefix and queue (see make run): free ports, so a
    # demo runs beside a `make run` or another checkout's demo.
    settings = checkout_isolated(Settings(worker_metrics_port=free_port(), log_level="WARNING"))
    seed = random.randrange(1_000_000)  # new images each run, so the first pass is real work
    photo = photo_like(1920, 1080, seed=seed)
    jpeg = encode(photo, "JPEG", quality=90)
    png = encode(photo.resize((800, 450)).convert("RGBA"), "PNG")
    webp = encode(photo.resize((1280, 720)), "WEBP", quality=85)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]imgproc demo[/]: starting worker and API (logs in {VAR_DIR / 'logs'})")
    with (
        service_stack(
            settings, port=free_port(), concurrency=2, separate_beat=False, logs=VAR_DIR / "logs"
        ) as running,
        httpx.Client(base_url=running.base_url, timeout=30) as client,
    ):
        console.print(
            f"API at {running.base_url}/docs, worker metrics at "
            f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
        )
        rows = [
            submit(client, "resize jpeg", "resize", jpeg, "photo.jpg", width="640", height="360"),
            submit(client, "grayscale webp", "grayscale", webp, "photo.webp"),
            submit(
                client,
                "crop png",
                "crop",
                png,
                "photo.png",
                left="200",
                top="100",
                width="400",
                height="250",
            ),
        ]
        for row in rows:
            finish(client, row)
        repeat = submit(
            client, "resize jpeg again", "resize", jpeg, "copy.jpg", width="640", height="360"
        )
        finish(client, repeat)
        bomb = submit(client, "bomb png", "grayscale", png_bomb(), "bomb.png")
        rows += [repeat, bomb]
    table = Table(title="imgproc demo (times from the job's own timestamps)")
    for column in ("request", "HTTP", "status", "total", "processing", "cache hit", "result"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(
            row.label,
            str(row.http_status),
            row.status,
            f"{row.answer_ms:.0f} ms (answer)"
            if row.cache_hit
            else f"{row.total_ms:.0f} ms"
            if row.task_id
            else "-",
            "cached" if row.cache_hit else f"{row.processing_ms:.0f} ms" if row.task_id else "-",
            "yes" if row.cache_hit else "no",
            row.size or "-",
        )
    console.print(table)
    for row in rows:
        console.print(f"  {row.label}: {row.output}")
    console.print(
        "Everything the demo started has been stopped. Next: `make run` to try the service in "
        "a browser (http://127.0.0.1:8000/ui/), or `make lab-1` to start the labs."
    )
    if any(r.status not in ("done",) and r.label != "bomb png" for r in rows):
        sys.exit("some demo jobs did not finish; see the logs above")


if __name__ == "__main__":
    main()
