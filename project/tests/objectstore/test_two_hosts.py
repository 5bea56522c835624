"""Workers on two "machines": they share nothing but PostgreSQL, Redis and the object store.

Each worker is its own process tree with its own data directory, Celery node name
(`worker@host-a`, `worker@host-b`) and no metrics files in common; the blobs live in a real S3
server process (moto's `moto_server`, see conftest.py). One batch is processed by both; one
worker is SIGKILLed mid-batch; every job must end `done`, once, with the right pixels.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from devtools.launch import Faults, free_port, running, start_api, start_worker, wait_for
from devtools.samples import encode, halves
from PIL import Image
from sqlalchemy import text

from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.migrate import prepare_storage

Isolated = Callable[..., Settings]
S3Settings = Callable[..., Settings]
RED, BLUE = (220, 20, 20), (20, 20, 220)
JOBS = 36


def near(pixel: Any, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def done_by(log: Path) -> set[str]:
    """Ids of the jobs a worker recorded `done` (its JSON log's job_done lines)."""
    found = set()
    for line in log.read_text(errors="replace").splitlines():
        if '"job_done"' in line:
            with_id = json.loads(line)
            found.add(with_id["job_id"])
    return found


def host(base: Settings, root: Path, name: str) -> Settings:
    """The settings of one "machine": its own data directory, no shared metrics files."""
    return base.model_copy(
        update={
            "data_dir": root / name / "data",
            "prometheus_multiproc_dir": None,
            "worker_metrics_port": 0,
        }
    )


def test_two_hosts_share_a_batch_and_a_killed_one_loses_nothing(
    isolated: Isolated, s3_settings: S3Settings, logs_dir: Path, tmp_path: Path
) -> None:
    # A 3 s lease: the killed worker's job is re-sent by the reconciler (beat on host b).
    base = s3_settings(isolated("hosts", processing_timeout_seconds=3))
    prepare_storage(base)
    api, host_a, host_b = (host(base, tmp_path, n) for n in ("api", "host-a", "host-b"))
    log_a, log_b = logs_dir / "host-a-worker.log", logs_dir / "host-b-worker.log"
    slow = Faults(slowdown_seconds=0.25)  # so that the batch is still running at the kill
    port = free_port()
    engine = make_sync_engine(base.database_url)
    with (
        running(lambda: start_api(api, logs_dir / "hosts-api.log", port=port)),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
        running(
            lambda: start_worker(host_b, log_b, faults=slow, node_name="worker@host-b",
                                 beat_schedule=tmp_path / "beat-b")
        ),
    ):  # fmt: skip
        worker_a = start_worker(host_a, log_a, faults=slow, node_name="worker@host-a")
        try:
            sent: dict[str, tuple[str, int, int]] = {}
            for i in range(JOBS):
                width, height = 80 + 2 * i, 40 + i
                png = encode(halves((width, height), RED, BLUE), "PNG")
                op = ("resize", "crop", "grayscale")[i % 3]
                fields = {
                    "resize": {"width": str(width // 2)},
                    "crop": {"left": "0", "top": "0", "width": "20", "height": "20"},
                    "grayscale": {},
                }[op]
                response = client.post(f"/{op}", files={"file": ("a.png", png)}, data=fields)
                assert response.status_code == 202, response.text
                sent[response.json()["task_id"]] = (op, width, height)
            wait_for(lambda: len(done_by(log_a)) >= 3, timeout=60, what="host a to do 3 jobs")
        finally:
            worker_a.kill()  # SIGKILL to host a's whole process tree, mid-batch
        killed_at = len(done_by(log_a))

        def rows() -> dict[str, tuple[str, int]]:
            with engine.connect() as conn:
                found = conn.execute(
                    text("SELECT id, status, attempts FROM imgproc_jobs WHERE id = ANY(:ids)"),
                    {"ids": [uuid.UUID(i) for i in sent]},
                ).all()
            return {str(r.id): (r.status, r.attempts) for r in found}

        wait_for(
            lambda: all(st == "done" for st, _ in rows().values()),
            timeout=90,
            what="host b to finish every job, the killed host's one included",
            interval=0.2,
        )
        final = rows()
        a, b = done_by(log_a), done_by(log_b)
        assert len(final) == JOBS and all(st == "done" for st, _ in final.values())
        assert a | b == set(sent), "every job was recorded done by one of the hosts"
        assert not a & b, f"jobs recorded done twice: {sorted(a & b)}"
        assert len(a) == killed_at >= 3 and len(b) >= 3, (len(a), len(b))
        retried = [i for i, (_, attempts) in final.items() if attempts > 1]
        # Prefetch 1: host a held at most the one job it was running when it died.
        assert len(retried) <= 1 and all(final[i][1] == 2 for i in retried), final
        assert not retried or retried[0] in b
        for task_id, (op, width, height) in sent.items():
            response = client.get(f"/result/{task_id}")
            assert response.status_code == 200, response.text
            out = Image.open(io.BytesIO(response.content))
            if op == "resize":
                assert out.size[0] == width // 2 and abs(out.size[1] - height / 2) <= 1, out.size
                assert near(out.getpixel((2, out.size[1] // 2)), RED)
                assert near(out.getpixel((out.size[0] - 3, out.size[1] // 2)), BLUE)
            elif op == "crop":
                assert out.size == (20, 20) and near(out.getpixel((10, 10)), RED)
            else:
                assert out.mode == "L" and out.size == (width, height)
                assert abs(out.getpixel((2, 2)) - out.getpixel((width - 3, 2))) > 20  # type: ignore[operator]
        for settings in (api, host_a, host_b):
            objects = settings.data_dir / "objects"
            local = [p for p in objects.rglob("*") if p.is_file()] if objects.exists() else []
            assert not local, f"blobs on a host's own disk: {local}"
        print(
            f"\n  two hosts: {JOBS} jobs, all done; host a did {len(a)} before its SIGKILL, "
            f"host b {len(b)}; re-run after the kill: {len(retried)}; done twice: 0"
        )
    engine.dispose()
