"""Locust load on the submit path: POST /resize with a ~200 KB JPEG.

Each request asks for a different width, so each one is a new job (a cache miss): this measures
validation, storage, the INSERT and the enqueue, not the de-duplication shortcut.
Run by `bench/bench.py`; alone: `locust -f project/bench/locustfile.py --host http://...`.
"""

from __future__ import annotations

import itertools
import os

from locust import HttpUser, constant_throughput, task

from imgproc.samples import encode, photo_like

IMAGE = encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)
RATE = float(os.environ.get("BENCH_USER_RATE", "1"))  # requests per second per user
_widths = itertools.cycle(range(100, 1600))


class Submitter(HttpUser):
    wait_time = constant_throughput(RATE)

    @task
    def resize(self) -> None:
        width = next(_widths)
        self.client.post(
            "/resize",
            files={"file": ("photo.jpg", IMAGE, "image/jpeg")},
            data={"width": str(width)},
            name="/resize",
        )
