"""The whole path with real processes: API (uvicorn) -> Redis broker -> Celery worker -> result."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from celery import Celery
from devtools.faults import Faults
from devtools.launch import Child, free_port, running, start_api, start_worker, wait_for
from devtools.samples import encode, halves, jpeg_with_orientation, photo_like
from PIL import Image, ImageChops
from sqlalchemy import Engine, text

from imgproc.celery_app import PROCESS_TASK
from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.storage.service import ContentStore

RED, BLUE = (230, 20, 20), (20, 20, 230)
WaitDone = Callable[..., dict[str, Any]]  # the `wait_done` fixture
Isolated = Callable[..., Settings]  # the `isolated` fixture


def submit(
    client: httpx.Client, op: str, data: bytes, name: str = "in.png", /, **fields: object
) -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")}
    return client.post(f"/{op}", files=files, data={k: str(v) for k, v in fields.items()})


def fetch(client: httpx.Client, task_id: str) -> tuple[Image.Image, httpx.Response]:
    response = client.get(f"/result/{task_id}")
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content)), response


def test_crop_full_path_is_pixel_exact(stack: httpx.Client, wait_done: WaitDone) -> None:
    src = photo_like(160, 120, seed=11)
    response = submit(stack, "crop", encode(src, "PNG"), left=30, top=40, width=64, height=32)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["cache_hit"] is False and body["status"] == "queued"
    assert body["status_url"].endswith(f"/task-status/{body['task_id']}")
    assert body["result_url"].endswith(f"/result/{body['task_id']}")
    status = wait_done(stack, body["task_id"])
    assert status["status"] == "done", status
    assert status["attempts"] == 1 and status["operation"] == "crop"
    assert status["params"] == {"left": 30, "top": 40, "width": 64, "height": 32}
    assert status["started_at"] and status["finished_at"]
    out, response = fetch(stack, body["task_id"])
    assert response.headers["content-type"] == "image/png"
    assert ImageChops.difference(out.convert("RGB"), src.crop((30, 40, 94, 72))).getbbox() is None


def test_grayscale_full_path(stack: httpx.Client, wait_done: WaitDone) -> None:
    src = halves((64, 32), RED, BLUE)
    response = submit(stack, "grayscale", encode(src, "WEBP", quality=95), "x.webp")
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert wait_done(stack, task_id)["status"] == "done"
    out, response = fetch(stack, task_id)
    assert response.headers["content-type"] == "image/webp"
    left, right = out.convert("RGB").getpixel((8, 16)), out.convert("RGB").getpixel((56, 16))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    expected_left = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])
    expected_right = round(0.299 * BLUE[0] + 0.587 * BLUE[1] + 0.114 * BLUE[2])
    assert abs(left[0] - expected_left) <= 6 and abs(right[0] - expected_right) <= 6, (left, right)
    assert max(left) - min(left) <= 3, "grayscale output must have no colour"


def test_resize_full_path_jpeg_with_orientation(stack: httpx.Client, wait_done: WaitDone) -> None:
    data = jpeg_with_orientation(halves((400, 200), RED, BLUE), 6)  # upright: 200x400
    response = submit(stack, "resize", data, "photo.jpg", width=50, filter="bicubic")
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    status = wait_done(stack, task_id)
    assert status["status"] == "done", status
    assert status["output"]["width"] == 50 and status["output"]["height"] == 100
    out, response = fetch(stack, task_id)
    assert response.headers["content-type"] == "image/jpeg" and out.size == (50, 100)
    top, bottom = out.convert("RGB").getpixel((25, 10)), out.convert("RGB").getpixel((25, 90))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 180 and bottom[2] > 180, f"red on top, blue below; got {top}, {bottom}"


def test_identical_request_is_processed_once(
    stack: httpx.Client, wait_done: WaitDone, db: Engine
) -> None:
    data = encode(photo_like(90, 60, seed=21), "PNG")
    first = submit(stack, "resize", data, width=30)
    # Same bytes and the same normalized parameters (defaults spelled out), another file name.
    second = submit(
        stack, "resize", data, "other.png", width=30, keep_aspect="true", filter="lanczos"
    )
    assert first.status_code == 202 and second.status_code == 200, (first.text, second.text)
    assert second.json()["cache_hit"] is True and second.headers["x-cache"] == "HIT"
    assert second.json()["task_id"] == first.json()["task_id"], (
        "the repeat must answer with the first job"
    )
    wait_done(stack, first.json()["task_id"])
    third = submit(stack, "resize", data, width=30)
    assert third.json()["task_id"] == first.json()["task_id"] and third.json()["status"] == "done"
    different = submit(stack, "resize", data, width=31)
    assert different.status_code == 202 and different.json()["task_id"] != first.json()["task_id"]
    with db.connect() as conn:
        key_rows = conn.execute(
            text(
                "SELECT count(*) FROM imgproc_jobs WHERE request_key ="
                " (SELECT request_key FROM imgproc_jobs WHERE id = :id)"
            ),
            {"id": first.json()["task_id"]},
        ).scalar_one()
    assert key_rows == 1, "identical requests made one job row"


def test_a_repeat_while_the_first_job_runs_shares_it(
    isolated: Isolated, logs_dir: Path, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    hold.touch()  # the worker claims the job, then waits until the file is gone
    s = isolated("repeat")
    port = free_port()
    engine = make_sync_engine(s.database_url)
    data = encode(photo_like(64, 48, seed=41), "PNG")
    try:
        with (
            running(
                lambda: start_api(s, logs_dir / "repeat-api.log", port=port),
                lambda: start_worker(
                    s, logs_dir / "repeat-worker.log", faults=Faults(hold_file=hold)
                ),
            ),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        ):
            first = submit(client, "resize", data, width=32).json()
            wait_for(
                lambda: (
                    client.get(f"/task-status/{first['task_id']}").json()["status"] == "processing"
                ),
                timeout=20,
                what="the worker to start the first job",
            )
            again = submit(client, "resize", data, width=32)
            assert again.status_code == 200 and again.json()["cache_hit"] is True
            assert again.json()["task_id"] == first["task_id"]
            assert again.json()["status"] == "processing", "answered at once, while it runs"
            hold.unlink()
            wait_for(
                lambda: client.get(f"/task-status/{first['task_id']}").json()["status"] == "done",
                timeout=20,
                what="the job to finish",
            )
            out, _ = fetch(client, first["task_id"])
            assert out.size == (32, 24)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, attempts FROM imgproc_jobs")).all()
        assert [tuple(r) for r in rows] == [("done", 1)], "one job, processed once"
    finally:
        engine.dispose()


def test_status_cache_is_invalidated_by_the_worker(
    stack: httpx.Client, settings: Settings, wait_done: WaitDone
) -> None:
    response = submit(stack, "grayscale", encode(photo_like(50, 40, seed=5), "PNG"))
    task_id = response.json()["task_id"]
    client = redis.Redis.from_url(settings.redis_url)
    key = f"{settings.redis_prefix}imgproc:status:{task_id}"
    try:
        assert client.exists(key), "a new job's status is cached at once"
        wait_for(
            lambda: json.loads(client.get(key) or b"{}").get("status") == "done",
            timeout=30,
            what="the worker to write the final status through to the cache",
        )
        assert stack.get(f"/task-status/{task_id}").json()["status"] == "done"
        assert client.ttl(key) > settings.status_ttl_seconds, "final states are kept longer"
    finally:
        client.close()


def test_redelivered_message_does_not_process_a_finished_job_again(
    stack: httpx.Client, settings: Settings, wait_done: WaitDone, db: Engine
) -> None:
    task_id = submit(stack, "grayscale", encode(photo_like(40, 40, seed=9), "PNG")).json()[
        "task_id"
    ]
    before = wait_done(stack, task_id)
    app = Celery(set_as_current=False)
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport_options={"global_keyprefix": settings.redis_prefix},
    )
    try:
        for _ in range(3):  # what a redelivery (or the reconciler's duplicate) looks like
            app.send_task(PROCESS_TASK, args=[task_id], queue=settings.celery_queue)
    finally:
        app.close()
    marker = submit(stack, "grayscale", encode(photo_like(40, 40, seed=10), "PNG")).json()[
        "task_id"
    ]
    wait_done(stack, marker)  # the queue is FIFO: once this is done, the duplicates were seen
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT attempts, updated_at, status FROM imgproc_jobs WHERE id = :id"),
            {"id": task_id},
        ).one()
    assert row.status == "done" and row.attempts == 1, "a finished job must not be claimed again"
    assert row.updated_at.isoformat().replace("+00:00", "Z") == before["updated_at"]


def test_request_id_reaches_the_worker_log(
    stack: httpx.Client, worker: Child, wait_done: WaitDone, logs_dir: Path
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    response = stack.post(
        "/grayscale",
        files={"file": ("a.png", encode(photo_like(30, 30, seed=31), "PNG"))},
        headers={"X-Request-ID": request_id},
    )
    assert response.headers["x-request-id"] == request_id
    task_id = response.json()["task_id"]
    assert wait_done(stack, task_id)["status"] == "done"
    wait_for(lambda: task_id in worker.log_text(), timeout=10, what="the worker's log line")
    lines = [json.loads(line) for line in worker.log_text().splitlines() if task_id in line]
    done = [line for line in lines if line.get("event") == "job_done"]
    assert done and done[0]["request_id"] == request_id, (
        "the worker's log for a job must carry the request id of the HTTP request"
    )
    api_log = (logs_dir / "api.log").read_text().splitlines()
    api_lines = [json.loads(line) for line in api_log if line.startswith("{")]
    access = [line for line in api_lines if line.get("request_id") == request_id]
    assert [(line["event"], line.get("job_id")) for line in access] == [("request", task_id)], (
        "the upload's one API log line must name the job it created"
    )


def test_the_worker_keeps_freed_image_memory(worker: Child) -> None:
    # imgproc.worker tunes the allocator at import (images/memory.py); it says so when ready.
    ready = [
        json.loads(line) for line in worker.log_text().splitlines() if '"worker_ready"' in line
    ]
    assert ready and ready[0]["keeps_image_memory"] is True


def test_many_concurrent_jobs_all_finish(
    stack: httpx.Client, api_url: str, db: Engine, row_count: Callable[[], int]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    colours = [((i * 7) % 256, (i * 13) % 256, (i * 29) % 256) for i in range(200)]
    ops = ["crop", "grayscale", "resize"]

    def other(c: tuple[int, int, int]) -> tuple[int, int, int]:
        return (255 - c[0], 255 - c[1], 255 - c[2])

    def one(i: int) -> tuple[int, str]:
        # Left half one colour, right half another: a wrong crop offset, swapped resize axes
        # or a mirrored image all put the wrong colour where the checks below look.
        data = encode(halves((48, 32), colours[i], other(colours[i])), "PNG")
        fields = {"crop": {"left": 16, "top": 8, "width": 16, "height": 8},
                  "grayscale": {}, "resize": {"width": 24}}[ops[i % 3]]  # fmt: skip
        with httpx.Client(base_url=api_url, timeout=60) as c:
            response = submit(c, ops[i % 3], data, **fields)
        assert response.status_code == 202, response.text
        return i, response.json()["task_id"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        submitted = list(pool.map(one, range(200)))
    ids = [task_id for _, task_id in submitted]
    assert len(set(ids)) == 200, "200 different requests make 200 jobs"

    def all_done() -> bool:
        with db.connect() as conn:
            done = conn.execute(
                text("SELECT count(*) FROM imgproc_jobs WHERE id = ANY(:ids) AND status = 'done'"),
                {"ids": [uuid.UUID(i) for i in ids]},
            ).scalar_one()
        return bool(done == 200)

    wait_for(all_done, timeout=120, what="all 200 jobs to be done", interval=0.25)

    def gray(c: tuple[int, int, int]) -> int:
        return round(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])

    # (size, a pixel that must be the left colour, one that must be the right colour)
    expected = {"crop": ((16, 8), (2, 2), (13, 5)),
                "resize": ((24, 16), (2, 2), (21, 13)),
                "grayscale": ((48, 32), (2, 2), (45, 29))}  # fmt: skip
    for i, task_id in submitted:
        op = ops[i % 3]
        out, _ = fetch(stack, task_id)
        size, left_at, right_at = expected[op]
        assert out.size == size, f"job {i} ({op}): size"
        left, right = colours[i], other(colours[i])
        if op == "grayscale":
            assert out.mode == "L"
            got_left, got_right = out.getpixel(left_at), out.getpixel(right_at)
            assert isinstance(got_left, float | int) and isinstance(got_right, float | int)
            assert abs(got_left - gray(left)) <= 1, f"job {i}: left half"
            assert abs(got_right - gray(right)) <= 1, f"job {i}: right half"
        else:
            rgb = out.convert("RGB")
            assert rgb.getpixel(left_at) == left, f"job {i} ({op}): left half in place"
            assert rgb.getpixel(right_at) == right, f"job {i} ({op}): right half in place"


def test_a_lost_result_file_is_computed_again(
    stack: httpx.Client, settings: Settings, wait_done: WaitDone
) -> None:
    task_id = submit(stack, "grayscale", encode(photo_like(30, 20, seed=77), "PNG")).json()[
        "task_id"
    ]
    status = wait_done(stack, task_id)
    ContentStore(settings.data_dir).delete(status["output"]["sha256"])  # lost in a crash
    response = stack.get(f"/result/{task_id}")
    assert response.status_code == 409, response.text
    assert "computed again" in response.json()["error"]["message"]
    again = wait_done(stack, task_id)
    assert again["status"] == "done" and again["attempts"] == 2
    assert again["output"]["sha256"] == status["output"]["sha256"], "the same bytes come back"
    out, _ = fetch(stack, task_id)
    assert out.size == (30, 20) and out.mode == "L"
