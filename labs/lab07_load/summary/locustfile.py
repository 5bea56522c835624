"""The course's common scenario, run against every lab's service by `make load-summary`.

    .venv/bin/locust -f labs/lab07_load/summary/locustfile.py --headless -u 32 -r 32 -t 20s \\
        --host http://127.0.0.1:8000

Only what labs 1-5 all answer, so each lab gets exactly the same work:

    weight  request                             name in the report
      6     GET /items?limit=20&offset=...      GET /items          (one of the first 50 pages)
      3     GET /items/{id}                     GET /items/{id}     (an item of a page it saw)
      1     POST /items                         POST /items         (a new item, a unique name)

SUMMARY_WRITE_WEIGHT (default 1; 0 for a read-only run) changes the weight of the write, and
SUMMARY_WRITE=orders makes it `POST /orders` (lab 5 on: an order of an item it saw, whose
event goes through RabbitMQ) instead of `POST /items`.

No think time: each user sends its next request as soon as the answer is back, so the number
of users is the number of requests in flight and requests/s is what the service can do at
that concurrency.
"""

from __future__ import annotations

import os
import random
import uuid

from locust import FastHttpUser, constant, task

PAGE_SIZE = 20
PAGES = 50
WRITE_WEIGHT = int(os.environ.get("SUMMARY_WRITE_WEIGHT", "1"))
WRITE_ORDERS = os.environ.get("SUMMARY_WRITE", "items") == "orders"


class SummaryUser(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.seen: list[int] = []
        self.browse()

    @task(6)
    def browse(self) -> None:
        offset = PAGE_SIZE * random.randrange(PAGES)
        with self.client.get(
            f"/items?limit={PAGE_SIZE}&offset={offset}", name="/items", catch_response=True
        ) as response:
            if response.status_code == 200:
                self.seen = [item["id"] for item in response.json()] or self.seen
            else:
                response.failure(f"status {response.status_code}")

    @task(3)
    def view_item(self) -> None:
        if self.seen:
            self.client.get(f"/items/{random.choice(self.seen)}", name="/items/{id}")
        else:
            self.browse()

    @task(WRITE_WEIGHT)
    def write(self) -> None:
        if WRITE_ORDERS and self.seen:
            body = {"item_id": random.choice(self.seen), "quantity": 1}
            self.client.post("/orders", json=body, name="/orders")
        else:
            body = {"name": f"summary {uuid.uuid4().hex}", "price": 9.5, "category": "summary"}
            self.client.post("/items", json=body, name="/items")
