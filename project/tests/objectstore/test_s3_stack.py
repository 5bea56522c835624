"""The service on object storage: API and worker with `STORAGE_URL=s3://...` against a real S3
server process (moto's `moto_server`, see conftest.py), nothing in their data directories."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from devtools.launch import free_port, running, start_api, start_worker
from devtools.samples import encode, halves
from PIL import Image

from imgproc.config import Settings
from imgproc.migrate import prepare_storage
from imgproc.storage.backend import open_store

Isolated = Callable[..., Settings]
S3Settings = Callable[..., Settings]
WaitDone = Callable[..., dict[str, Any]]
RED, BLUE = (220, 20, 20), (20, 20, 220)


def near(pixel: Any, colour: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def objects(settings: Settings) -> int:
    root = settings.data_dir / "objects"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_jobs_run_through_the_object_store_and_a_lost_output_is_computed_again(
    isolated: Isolated, s3_settings: S3Settings, logs_dir: Path, wait_done: WaitDone
) -> None:
    settings = s3_settings(isolated("s3"))
    prepare_storage(settings)  # the bucket, as `python -m imgproc.migrate` creates it
    port = free_port()
    with (
        running(lambda: start_api(settings, logs_dir / "s3-api.log", port=port)),
        running(lambda: start_worker(settings, logs_dir / "s3-worker.log", pool="solo")),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        png = encode(halves((120, 80), RED, BLUE), "PNG")
        files = {"file": ("a.png", png)}
        sent = {
            "resize": client.post("/resize", files=files, data={"width": "60"}),
            "crop": client.post(
                "/crop", files=files, data={"left": "0", "top": "0", "width": "50", "height": "80"}
            ),
            "grayscale": client.post("/grayscale", files=files),
        }
        assert all(r.status_code == 202 for r in sent.values()), [r.text for r in sent.values()]
        ids = {op: r.json()["task_id"] for op, r in sent.items()}
        for task_id in ids.values():
            assert wait_done(client, task_id)["status"] == "done"
        got = {}
        for op, task_id in ids.items():
            response = client.get(f"/result/{task_id}")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "image/png"
            assert int(response.headers["content-length"]) == len(response.content)
            assert "immutable" in response.headers["cache-control"]
            got[op] = Image.open(io.BytesIO(response.content))
        assert got["resize"].size == (60, 40)
        assert near(got["resize"].getpixel((10, 20)), RED)
        assert near(got["resize"].getpixel((50, 20)), BLUE)
        assert got["crop"].size == (50, 80) and near(got["crop"].getpixel((40, 70)), RED)
        assert got["grayscale"].mode == "L" and got["grayscale"].size == (120, 80)
        assert objects(settings) == 0, "nothing may land in the local data directory"
        store = open_store(settings, fsync=False)
        # 1 input (the same bytes for all three) + 3 outputs, all in the bucket.
        status = client.get(f"/task-status/{ids['resize']}").json()
        output = status["output"]["sha256"]
        assert store.has(output)
        # The output object is lost: the API notices, the job runs again, same bytes.
        store.delete(output)
        lost = client.get(f"/result/{ids['resize']}")
        assert lost.status_code == 409 and "computed again" in lost.json()["error"]["message"]
        again = wait_done(client, ids["resize"])
        assert again["status"] == "done" and again["output"]["sha256"] == output
        assert client.get(f"/result/{ids['resize']}").status_code == 200
        assert client.get("/readyz").json()["checks"]["storage"] == "ok"


def test_an_unreachable_object_store_is_a_503(
    isolated: Isolated, s3_settings: S3Settings, logs_dir: Path
) -> None:
    settings = s3_settings(isolated("s3down")).model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    )
    port = free_port()
    with (
        running(lambda: start_api(settings, logs_dir / "s3down-api.log", port=port)),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        png = encode(halves((40, 30), RED, BLUE), "PNG")
        response = client.post("/grayscale", files={"file": ("a.png", png)})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response.headers["retry-after"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "object store" in ready.json()["checks"]["storage"]
