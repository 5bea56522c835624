"""Locust user of the lab 4 benchmark: GET /items/{id}/quote as fast as answers come back.

`labs/lab04_async/bench.py` runs it headless against 127.0.0.1; by hand:

    .venv/bin/locust -f labs/lab04_async/bench/locustfile.py --headless -u 50 -r 50 -t 20s \\
        --host http://127.0.0.1:8000

BENCH_ITEM_IDS (e.g. "1-100") names the items to ask for; each user picks one at random.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, task

first, _, last = os.environ.get("BENCH_ITEM_IDS", "1-100").partition("-")
ITEM_IDS = list(range(int(first), int(last or first) + 1))


class QuoteUser(FastHttpUser):
    # No think time: each user sends its next request as soon as the answer arrives, so the
    # number of users is the number of requests in flight.
    wait_time = constant(0)

    @task
    def quote(self) -> None:
        item_id = random.choice(ITEM_IDS)
        self.client.get(f"/items/{item_id}/quote", name="/items/{id}/quote")
