"""Lab 5, task 2: when the broker is down or says no, the client gets a 503 and no order.

A `201` is a promise that the order exists and that its event will be delivered. The broker
can break that promise in several ways, and a producer that does not wait for the confirm
never hears about them: the message is simply gone. These tests make the real RabbitMQ
refuse (a full queue with `x-overflow=reject-publish`, a deleted exchange, no queue bound to
the routing key), disappear (a TCP proxy in front of it is cut) or hang (the proxy stalls: the
connection stays open and nothing comes back), and check that each order is either 201 with
its event delivered, or 503 with no order row at all.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from labs.lab05_queue.tests.conftest import PUBLISH_TIMEOUT
from labs.lab05_queue.tests.rabbit import (
    Names,
    Notifications,
    Rabbit,
    created_counts,
    wait_until,
)
from labs.lab05_queue.tests.test_orders import orders_count, post_order
from shared.testing.items import create_item, detail_of, show
from shared.testing.tcp_proxy import TcpProxy

TASK = "2. Broker down or refusing: 503, no order"

# A 503 must come within the publish timeout, plus the time to notice a dead connection.
DEADLINE = PUBLISH_TIMEOUT + 5
# A hanging broker: the connection is open, so the only wait is the confirm's (plus a busy
# machine's delays).
HANG_MARGIN = 1.5


def expect_503(r: httpx.Response, what: str) -> None:
    assert r.status_code == 503, f"{what}: POST /orders must answer 503: {show(r)}"
    detail = detail_of(r)
    assert isinstance(detail, str) and detail, (
        f"{what}: the 503 must be JSON with a `detail` that says the broker failed: {show(r)}"
    )


def timed_post(client: httpx.Client, item_id: int) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    try:
        r = post_order(client, item_id)
    except httpx.TimeoutException:
        pytest.fail(
            f"POST /orders did not answer within {client.timeout.read:.0f} s while the broker "
            "was unavailable: bound the wait for the connection and the confirm "
            f"(AMQP_PUBLISH_TIMEOUT={PUBLISH_TIMEOUT:g} s)",
            pytrace=False,
        )
    return r, time.monotonic() - started


@pytest.fixture
def refuse(rabbit: Rabbit, refuse_names: Names, refuse_client: httpx.Client) -> Any:
    """The refusal set-up's exchange, with a fresh queue of at most 2 messages bound to it."""
    rabbit.declare_exchange(refuse_names.exchange)
    queue = f"{refuse_names.prefix}small"
    rabbit.declare_queue(queue, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    rabbit.purge(queue)
    rabbit.bind(queue, refuse_names.exchange, "order.created")
    return queue


@pytest.mark.points(8, task=TASK)
def test_a_full_queue_refuses_the_event_and_the_order_is_503(
    refuse_client: httpx.Client, refuse: str, rabbit: Rabbit, db: psycopg.Connection
) -> None:
    item = create_item(refuse_client)
    for n in (1, 2):
        r = post_order(refuse_client, item["id"])
        assert r.status_code == 201, f"order {n} of 2 fits in the queue, so 201: {show(r)}"
    assert rabbit.ready(refuse) == 2, "each 201 order must have put one event in the queue"
    before = orders_count(db)
    r, _ = timed_post(refuse_client, item["id"])
    expect_503(
        r,
        "the queue is full (x-max-length=2, x-overflow=reject-publish) and the broker nacks "
        "the event (enable publisher confirms: channel.confirm_delivery())",
    )
    assert orders_count(db) == before, (
        "the broker refused the event, so the order must not exist: publish before you commit, "
        "and roll back when the publish fails"
    )
    rabbit.purge(refuse)  # room again
    r = post_order(refuse_client, item["id"])
    assert r.status_code == 201, f"once the queue has room, orders are 201 again: {show(r)}"
    assert rabbit.ready(refuse) == 1, "the new order's event must be in the queue"


@pytest.mark.points(7, task=TASK)
def test_a_missing_exchange_or_no_queue_is_503(
    refuse_client: httpx.Client,
    refuse: str,
    rabbit: Rabbit,
    refuse_names: Names,
    db: psycopg.Connection,
) -> None:
    item = create_item(refuse_client)
    r = post_order(refuse_client, item["id"])
    assert r.status_code == 201, f"with the exchange and a queue in place, 201: {show(r)}"
    rabbit.purge(refuse)
    before = orders_count(db)
    rabbit.delete_exchange(refuse_names.exchange)  # the binding goes with it
    r, _ = timed_post(refuse_client, item["id"])
    expect_503(r, "the exchange was deleted: the broker closes the channel (404 NOT_FOUND)")
    # Whether the app declares the exchange again or not, no queue is bound to it any more:
    # an event nobody receives is lost unless it is published with mandatory=True.
    for attempt in range(2):
        r, _ = timed_post(refuse_client, item["id"])
        expect_503(
            r,
            f"(attempt {attempt + 1}) no queue is bound to the routing key: publish with "
            "mandatory=True so that the broker returns an unroutable event",
        )
    assert orders_count(db) == before, "a refused event must leave no order row"
    assert rabbit.ready(refuse) == 0, "a refused order must leave no event behind"
    rabbit.declare_exchange(refuse_names.exchange)
    rabbit.bind(refuse, refuse_names.exchange, "order.created")
    ok = wait_until(lambda: post_order(refuse_client, item["id"]).status_code == 201, 10, "")
    assert ok, "once the exchange and the queue are back, POST /orders must answer 201 again"


@pytest.mark.points(12, task=TASK)
def test_broker_down_is_503_and_nothing_is_lost_once_it_is_back(
    outage: tuple[httpx.Client, Notifications, TcpProxy], db: psycopg.Connection
) -> None:
    client, service, proxy = outage
    item = create_item(client)
    accepted: list[int] = []
    for _ in range(5):
        r = post_order(client, item["id"])
        assert r.status_code == 201, f"with the broker up, 201: {show(r)}"
        accepted.append(r.json()["id"])

    proxy.cut()  # RabbitMQ is unreachable: open connections reset, new ones refused
    before = orders_count(db)
    for n in range(3):
        r, seconds = timed_post(client, item["id"])
        expect_503(r, f"order {n + 1} while the broker is unreachable")
        assert seconds < DEADLINE, (
            f"the 503 took {seconds:.1f} s: with the broker down it must come within "
            f"{DEADLINE:g} s (fail fast: connection_attempts=1, a socket timeout)"
        )
    assert orders_count(db) == before, "orders answered 503 must not exist"
    assert service.running, (
        f"the notifications service must survive a broker outage (reconnect, do not exit):\n"
        f"{service.log_tail()}"
    )

    proxy.restore()
    deadline = time.monotonic() + 15
    while True:  # the API reconnects on its own: no restart
        r = post_order(client, item["id"])
        if r.status_code == 201:
            accepted.append(r.json()["id"])
            break
        expect_503(r, "while the API reconnects")
        assert time.monotonic() < deadline, "15 s after the broker came back, orders still fail"
        time.sleep(0.5)
    for _ in range(4):
        r = post_order(client, item["id"])
        assert r.status_code == 201, f"the broker is back: 201: {show(r)}"
        accepted.append(r.json()["id"])
    assert orders_count(db) == before + 5, "only the orders answered 201 may exist"

    def all_notified() -> bool:
        return len(created_counts(db, accepted, "order.created")) == len(accepted)

    wait_until(all_notified, 20, "")
    counts = created_counts(db, accepted, "order.created")
    missing = [i for i in accepted if i not in counts]
    assert not missing, (
        f"orders answered 201 must all be notified once the broker is back; orders {missing} "
        "were not (does the notifications service reconnect?)"
    )
    twice = {i: c for i, c in counts.items() if c != 1}
    assert not twice, f"each order must be notified exactly once: {twice}"


@pytest.mark.points(5, task=TASK)
def test_a_broker_that_hangs_is_503_after_the_publish_timeout(
    outage: tuple[httpx.Client, Notifications, TcpProxy], db: psycopg.Connection
) -> None:
    client, _, proxy = outage
    item = create_item(client)
    r = post_order(client, item["id"])
    assert r.status_code == 201, f"with the broker up, 201: {show(r)}"

    before = orders_count(db)
    proxy.stall()  # the connection stays open, but the confirm never comes back
    seen = before
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            posted = pool.submit(timed_post, client, item["id"])
            # While the publish waits, other clients must not see the order: a row committed
            # before the confirm (and deleted again after a failure) is an order that existed
            # without its event, and a crash in between would leave it so for good.
            while not posted.done():
                seen = max(seen, orders_count(db))
                time.sleep(0.05)
            r, seconds = posted.result()
    finally:
        proxy.resume()
    expect_503(r, "the broker stopped answering (no confirm came)")
    assert seen == before, (
        "while the publish waited for its confirm, the order was already visible in the orders "
        "table: commit the order only after the broker confirmed its event"
    )
    # The wait ends at AMQP_PUBLISH_TIMEOUT: not at a constant of the app's own, earlier or later.
    assert 0.8 * PUBLISH_TIMEOUT <= seconds < PUBLISH_TIMEOUT + HANG_MARGIN, (
        f"the 503 took {seconds:.1f} s: a broker that does not confirm must be answered 503 "
        f"after AMQP_PUBLISH_TIMEOUT={PUBLISH_TIMEOUT:g} s, the setting (bound the wait for "
        "the confirm with it)"
    )
    assert orders_count(db) == before, "an order whose event was not confirmed must not exist"
    ok = wait_until(lambda: post_order(client, item["id"]).status_code == 201, 15, "")
    assert ok, "once the broker answers again, POST /orders must answer 201 again (no restart)"
