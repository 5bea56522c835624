"""Lab 5, task 1: an order is a row and a confirmed, persistent `order.created` event.

POST /orders answers 201 only once the order is committed and its event is safe in RabbitMQ:
persistent (delivery mode 2), with a message id, on the durable exchange `<prefix>events`
with the routing key `order.created`. The grader binds a queue of its own (the spy) to the
exchange, so it receives a copy of every event and reads it as the consumer would.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from labs.lab05_queue.tests.rabbit import Message, Rabbit, wait_until
from shared.testing.items import create_item, show

TASK = "1. Orders publish order.created"

ORDER_FIELDS = {"id", "item_id", "item_name", "unit_price", "quantity", "total",
                "remind_in_seconds", "created_at"}  # fmt: skip


def post_order(client: httpx.Client, item_id: int, quantity: int = 1, **extra: Any) -> Any:
    return client.post("/orders", json={"item_id": item_id, "quantity": quantity, **extra})


def order_created(client: httpx.Client, item_id: int, quantity: int = 1, **extra: Any) -> Any:
    r = post_order(client, item_id, quantity, **extra)
    assert r.status_code == 201, f"POST /orders must answer 201 Created: {show(r)}"
    body = r.json()
    assert isinstance(body, dict) and set(body) >= ORDER_FIELDS, (
        f"POST /orders must answer the order with the fields {sorted(ORDER_FIELDS)}: {show(r)}"
    )
    return body


class Spy:
    """Copies of the events, by order id, read from the spy queue."""

    def __init__(self, rabbit: Rabbit, queue: str) -> None:
        self.rabbit = rabbit
        self.queue = queue
        self.seen: dict[int, list[Message]] = {}

    def poll(self) -> None:
        for message in self.rabbit.take_all(self.queue):
            try:
                order_id = int(message.json()["id"])
            except (ValueError, KeyError, TypeError):
                order_id = -1
            self.seen.setdefault(order_id, []).append(message)

    def events_of(self, order_ids: list[int], timeout: float = 5) -> dict[int, list[Message]]:
        def arrived() -> bool:
            self.poll()
            return all(i in self.seen for i in order_ids)

        wait_until(arrived, timeout, "the orders' events")
        return {i: self.seen.get(i, []) for i in order_ids}


@pytest.fixture
def events(rabbit: Rabbit, spy: str) -> Spy:
    return Spy(rabbit, spy)


def orders_count(db: psycopg.Connection) -> int:
    row = db.execute("SELECT count(*) FROM orders").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.points(8, task=TASK)
def test_order_is_created_with_a_persistent_confirmed_event(
    client: httpx.Client, events: Spy
) -> None:
    item = create_item(client, price=12.5, category="orders")
    order = order_created(client, item["id"], 3)
    assert order["item_id"] == item["id"] and order["quantity"] == 3, (
        f"the order must be for item {item['id']}, quantity 3: {order}"
    )
    assert order["total"] == 37.5 and order["unit_price"] == 12.5, (
        f"total = unit_price x quantity, the item's price at the time of the order: {order}"
    )
    r = client.get(f"/orders/{order['id']}")
    assert r.status_code == 200 and r.json() == order, (
        f"GET /orders/{order['id']} must answer the order as POST answered it: {show(r)}"
    )
    r = client.get(f"/orders/{order['id'] + 1_000_000}")
    assert r.status_code == 404, f"GET /orders/<unknown id> must answer 404: {show(r)}"

    copies = events.events_of([order["id"]])[order["id"]]
    assert len(copies) == 1, (
        f"one order must publish exactly one order.created event to the exchange, "
        f"routing key order.created; the grader's queue received {len(copies)}"
    )
    event = copies[0]
    props = event.properties
    assert props.delivery_mode == 2, (
        "the event must be persistent (delivery_mode=2), or a broker restart loses it"
    )
    want_id = f"order.created:{order['id']}"
    assert props.message_id == want_id, (
        f"the event's message_id must be {want_id!r}, got {props.message_id!r}: the consumer's "
        "idempotency key must be the same for every copy of one order's event (a publish "
        "retried after a lost confirm sends a second copy), so derive it from the order"
    )
    assert props.type == "order.created", f"the event's type must be 'order.created': {props}"
    body = json.loads(event.body)
    assert {k: body.get(k) for k in ORDER_FIELDS} == {k: order[k] for k in ORDER_FIELDS}, (
        f"the event's JSON body must be the order as the API answered it: {body} vs {order}"
    )


@pytest.mark.points(5, task=TASK)
def test_bad_orders_are_422_and_publish_nothing(
    client: httpx.Client, events: Spy, db: psycopg.Connection
) -> None:
    item = create_item(client)
    before = orders_count(db)
    bad = [
        ({"item_id": item["id"], "quantity": 0}, "quantity 0"),
        ({"item_id": item["id"], "quantity": 1001}, "quantity over 1000"),
        ({"item_id": item["id"], "quantity": "2"}, "a quantity that is text"),
        ({"item_id": item["id"]}, "no quantity"),
        ({"item_id": item["id"], "quantity": 1, "remind_in_seconds": 0}, "a reminder in 0 s"),
        ({"item_id": item["id"], "quantity": 1, "coupon": "x"}, "an unknown field"),
        ({"item_id": item["id"] + 1_000_000, "quantity": 1}, "an item that does not exist"),
    ]
    for body, what in bad:
        r = client.post("/orders", json=body)
        assert r.status_code == 422, f"POST /orders with {what} must answer 422: {show(r)}"
        assert "detail" in r.json(), f"a 422 answers a JSON detail: {show(r)}"
    assert orders_count(db) == before, "a refused order must not leave a row in `orders`"
    # Events travel in order: once the good order's event is in, any event of a refused
    # order (published before it) would be in too.
    order = order_created(client, item["id"])
    events.events_of([order["id"]])
    of_item = [
        i
        for i, copies in events.seen.items()
        for m in copies
        if m.json().get("item_id") == item["id"]
    ]
    assert of_item == [order["id"]], (
        f"only the one accepted order of item {item['id']} may publish an event; "
        f"events arrived for orders {of_item}"
    )


@pytest.mark.points(7, task=TASK)
def test_concurrent_orders_each_publish_one_event(client: httpx.Client, events: Spy) -> None:
    item = create_item(client, price=2.0)
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: post_order(client, item["id"], 2), range(40)))
    bad = [show(r) for r in responses if r.status_code != 201]
    assert not bad, f"40 orders at once must all answer 201; {len(bad)} did not, first: {bad[0]}"
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 40, "40 orders must get 40 different ids"
    copies = events.events_of(ids)
    counts = {i: len(c) for i, c in copies.items() if len(c) != 1}
    assert not counts, f"each order must publish exactly one event; these did not: {counts}"
    message_ids = {c[0].properties.message_id for c in copies.values()}
    assert len(message_ids) == 40, "each event needs its own message_id"
