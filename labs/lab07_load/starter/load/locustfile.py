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
from locust import HttpUser, constant, task

PAGE_SIZE = 20
# Visitors look at the first pages far more often than at the last ones: most of them stop
# after a few pages, so pick among the first PAGES.
PAGES = 50


# TODO(lab 7): make this a FastHttpUser (task 1).
class ShopUser(HttpUser):
    """One visitor of the shop."""

    # TODO(lab 7): a think time of between(0.2, 0.8) seconds (task 1).
    wait_time = constant(1)

    def on_start(self) -> None:
        # Ids of the items this visitor has seen; view_item opens one of them.
        self.seen: list[int] = []
        self.browse()

    # Given, as an example: the name groups every page under one row of the report, and
    # catch_response lets the task decide what counts as a failure.
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
        raise NotImplementedError("TODO(lab 7): GET /items/{id} of an item in self.seen")

    @task(1)
    def order(self) -> None:
        raise NotImplementedError(
            "TODO(lab 7): POST /orders with an item of self.seen and a quantity of 1 to 3"
        )

    @task(1)
    def stats(self) -> None:
        raise NotImplementedError("TODO(lab 7): GET /items/stats")
