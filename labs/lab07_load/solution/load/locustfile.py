"""A shop's visitors, simulated: they browse pages, open items, order, look at the stats.

    ../../../.venv/bin/locust --config load/locust.conf --host http://127.0.0.1:8000

(from the implementation folder; `load/locust.conf` holds the other options). Each simulated
user repeats: pick a task at random by its weight, run it, think for a moment. The request
names below group the requests in the report: `/items/{id}` is one row, not one per id.

    task        weight  request                            name in the report
    browse        6     GET /items?limit=20&offset=...     GET /items
    view_item     3     GET /items/{id}                    GET /items/{id}
    order         1     POST /orders (an item it saw)      POST /orders
    stats         1     GET /items/stats                   GET /items/stats

Importing `slo` registers the SLO check that judges every run when it ends.
"""

from __future__ import annotations

import random

import slo  # noqa: F401  (registers the SLO check on locust's `quitting` event)
from locust import FastHttpUser, between, task

PAGE_SIZE = 20
# Visitors look at the first pages far more often than at the last ones: most of them stop
# after a few pages, so pick among the first PAGES.
PAGES = 50


class ShopUser(FastHttpUser):
    """One visitor of the shop."""

    # Think time: a person reads a page before the next click. Without it each user would
    # send requests back to back, and 10 users would load the service like 1,000 people.
    wait_time = between(0.2, 0.8)

    def on_start(self) -> None:
        # Ids of the items this visitor has seen; view_item opens one of them.
        self.seen: list[int] = []
        self.browse()

    @task(6)
    def browse(self) -> None:
        offset = PAGE_SIZE * random.randrange(PAGES)
        with self.client.get(
            f"/items?limit={PAGE_SIZE}&offset={offset}", name="/items", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            page = response.json()
            if not isinstance(page, list):
                response.failure("GET /items did not answer a list")
                return
            self.seen = [item["id"] for item in page] or self.seen

    @task(3)
    def view_item(self) -> None:
        if not self.seen:
            self.browse()
            return
        item_id = random.choice(self.seen)
        self.client.get(f"/items/{item_id}", name="/items/{id}")

    @task(1)
    def order(self) -> None:
        if not self.seen:
            self.browse()
            return
        body = {"item_id": random.choice(self.seen), "quantity": random.randint(1, 3)}
        self.client.post("/orders", json=body, name="/orders")

    @task(1)
    def stats(self) -> None:
        self.client.get("/items/stats", name="/items/stats")
