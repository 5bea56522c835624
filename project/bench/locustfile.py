"""Locust load on the submit path: POST /resize with a ~200 KB JPEG.

Each user waits an exponentially distributed time (mean 1/BENCH_USER_RATE s) between requests.
Each request asks for a different width, so each one is a new job (a cache miss): this measures
validation, storage, the INSERT and the enqueue, not the de-duplication shortcut.
Run by `bench/bench.py`; alone: `locust -f project/bench/locustfile.py --host http://...`.
"""

from __future__ import annotations

import itertools
import os
import random
import time

from devtools.samples import encode, photo_like
from locust import HttpUser, task

IMAGE = encode(photo_like(1600, 1200, seed=42), "JPEG", quality=90)
RATE = float(os.environ.get("BENCH_USER_RATE", "1"))  # requests per second per user
_widths = itertools.cycle(range(100, 1600))


class Submitter(HttpUser):
    def on_start(self) -> None:
        # Stagger the first request too; locust's gevent makes this sleep cooperative.
        time.sleep(random.uniform(0, 2 / RATE))

    def wait_time(self) -> float:
        # Exponential think time: users act independently (Poisson-like arrivals), instead of
        # all 50 firing in the same instant as a fixed pacing started together would.
        return random.expovariate(RATE)

    @task
    def resize(self) -> None:
        width = next(_widths)
        self.client.post(
            "/resize",
            files={"file": ("photo.jpg", IMAGE, "image/jpeg")},
            data={"width": str(width)},
            name="/resize",
        )
