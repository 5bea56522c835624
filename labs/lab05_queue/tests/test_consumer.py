"""Lab 5, task 3: the notifications service handles every message once, even when it dies.

The broker delivers at least once: a message that was not acknowledged when its consumer
died is delivered again. So the consumer acks only after its transaction committed (a crash
before the ack is a redelivery, never a loss), and it is idempotent by message id (the
redelivery changes nothing, even when two consumers handle the same message at once). To
catch the consumer in the middle of a message, not between two, the grader holds a lock on
the notifications table: the consumer's INSERT waits, and PostgreSQL shows it waiting; that
is when the SIGKILL or SIGTERM comes, or a second consumer's INSERT of the same message.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from labs.lab05_queue.tests.conftest import PREFETCH
from labs.lab05_queue.tests.rabbit import (
    Names,
    Notifications,
    Rabbit,
    blocked_writers,
    created_counts,
    notifications_locked,
    wait_until,
)
from labs.lab05_queue.tests.test_orders import post_order
from shared.testing.items import create_item, show

TASK = "3. The notifications service"
CREATED = "order.created"


def place_orders(client: httpx.Client, item_id: int, count: int) -> list[int]:
    """`count` orders, 8 at a time; their ids."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post_order(client, item_id), range(count)))
    bad = [show(r) for r in responses if r.status_code != 201]
    assert not bad, f"every order must answer 201 (task 1): {bad[:2]}"
    return [int(r.json()["id"]) for r in responses]


def wait_handled(db: psycopg.Connection, ids: list[int], timeout: float = 30) -> dict[int, int]:
    """Wait until every order has a notification, then a little longer for late duplicates."""
    wait_until(lambda: len(created_counts(db, ids, CREATED)) == len(ids), timeout, "")
    time.sleep(1.0)  # a redelivery racing the last row shows up by now
    return created_counts(db, ids, CREATED)


def expect_each_once(counts: dict[int, int], ids: list[int], what: str) -> None:
    missing = [i for i in ids if i not in counts]
    twice = {i: c for i, c in counts.items() if c > 1}
    assert not missing, (
        f"{what}: {len(missing)} of {len(ids)} orders were never notified (e.g. {missing[:5]}); "
        "ack a message only after its transaction committed (auto_ack=False)"
    )
    assert not twice, (
        f"{what}: orders notified more than once {dict(list(twice.items())[:5])}; a "
        "redelivered message must change nothing (INSERT ... ON CONFLICT (message_id) DO NOTHING)"
    )


def wait_blocked(db: psycopg.Connection, service: Notifications, what: str) -> None:
    if not wait_until(lambda: blocked_writers(db) >= 1, 15, ""):
        pytest.fail(
            f"{what}: the notifications service never tried to write a notification while the "
            f"grader held the table's lock. Its log:\n{service.log_tail()}",
            pytrace=False,
        )


@pytest.mark.points(6, task=TASK)
def test_n_orders_make_exactly_n_notifications(shop: httpx.Client, db: psycopg.Connection) -> None:
    item = create_item(shop, name="Blue teapot for lab 5")
    ids = place_orders(shop, item["id"], 30)
    counts = wait_handled(db, ids)
    expect_each_once(counts, ids, "30 orders")
    rows = db.execute(
        "SELECT text FROM notifications WHERE kind = %s AND order_id = %s", (CREATED, ids[0])
    ).fetchall()
    assert rows and "Blue teapot for lab 5" in rows[0][0], (
        f"the notification's text must name the item that was ordered: {rows}"
    )


def created_event(order_id: int, item_name: str) -> dict[str, object]:
    """An `order.created` event as the shop publishes it, for an order the shop never made."""
    return {
        "id": order_id, "item_id": 1, "item_name": item_name, "unit_price": 2.0,
        "quantity": 1, "total": 2.0, "remind_in_seconds": None,
        "created_at": "2026-11-30T10:00:00+00:00",
    }  # fmt: skip


@pytest.mark.points(6, task=TASK)
def test_a_message_delivered_again_has_no_second_effect(
    notifications: Notifications, rabbit: Rabbit, main_names: Names, db: psycopg.Connection
) -> None:
    order_id = 900_000_001  # no such order in the shop: the consumer needs only the event
    event = created_event(order_id, "Duplicate mug")
    message_id = f"{CREATED}:{order_id}"
    for _ in range(3):  # a producer that retried its publish: the same message id each time
        rabbit.publish(
            main_names.exchange,
            CREATED,
            json.dumps(event).encode(),
            message_id=message_id,
            type=CREATED,
        )
    counts = wait_handled(db, [order_id], timeout=10)
    expect_each_once(counts, [order_id], "the same message delivered three times")
    assert wait_until(lambda: rabbit.ready(main_names.work) == 0, 5, ""), (
        "every copy must be acknowledged, the work queue must be empty"
    )
    retried = rabbit.ready(main_names.retry)
    assert retried == 0, (
        f"a duplicate is not a failure, but {retried} copies went to the retry queue: the "
        "second INSERT of a message id must do nothing (ON CONFLICT (message_id) DO NOTHING), "
        "not raise a unique violation"
    )
    time.sleep(1.0)  # a failure handled without the retry queue shows now
    dead = [m for m in rabbit.take_all(main_names.dead) if m.properties.message_id == message_id]
    assert not dead, "a duplicate is not a failure: it must be acked, not dead-lettered"


@pytest.mark.points(4, task=TASK)
def test_one_message_handled_by_two_consumers_at_once_has_one_effect(
    race: tuple[Names, list[Notifications]],
    rabbit: Rabbit,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    names, services = race
    order_id = 900_000_002
    event = created_event(order_id, "Raced mug")
    message_id = f"{CREATED}:{order_id}"
    with notifications_locked(database_url):
        # RabbitMQ hands the two copies to the two consumers in turn; each one's INSERT waits
        # for the grader's lock, so both handle the message at the same time.
        for _ in range(2):
            rabbit.publish(
                names.exchange,
                CREATED,
                json.dumps(event).encode(),
                message_id=message_id,
                type=CREATED,
            )
        if not wait_until(lambda: blocked_writers(db) >= 2, 15, ""):
            pytest.fail(
                "two notifications services on one queue were given the same message, but "
                "they did not both try to write it while the grader held the table's lock. "
                f"Their logs:\n{services[0].log_tail()}\n{services[1].log_tail()}",
                pytrace=False,
            )
    counts = wait_handled(db, [order_id], timeout=10)
    expect_each_once(counts, [order_id], "the same message handled by two consumers at once")
    for service in services:  # SIGTERM: each finishes the message in hand, then exits
        service.terminate()
    for service in services:
        service.wait_exit(10)
    retried, dead = rabbit.ready(names.retry), rabbit.ready(names.dead)
    assert retried == 0 and dead == 0, (
        f"the second copy of a message is not a failure, but the retry queue holds {retried} "
        f"and the dead-letter queue {dead} of them: a check before the INSERT (SELECT ... "
        "WHERE message_id) does not see the row another consumer has not committed yet, and "
        "its INSERT then fails on the unique message_id; let the INSERT itself decide "
        "(INSERT ... ON CONFLICT (message_id) DO NOTHING)"
    )


@pytest.mark.points(5, task=TASK)
def test_prefetch_limits_the_messages_handed_out_at_once(
    shop: httpx.Client,
    notifications: Notifications,
    rabbit: Rabbit,
    main_names: Names,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    item = create_item(shop)
    with notifications_locked(database_url):
        ids = place_orders(shop, item["id"], 40)
        wait_blocked(db, notifications, "prefetch")
        # The broker pushes up to the prefetch limit at once; give it time to push more.
        time.sleep(1.0)
        ready = rabbit.ready(main_names.work)
    assert ready == 40 - PREFETCH, (
        f"with NOTIFY_PREFETCH={PREFETCH} the consumer may hold {PREFETCH} unacknowledged "
        f"messages, so {40 - PREFETCH} of 40 must wait in the queue, but {ready} did: "
        "call channel.basic_qos(prefetch_count=settings.notify_prefetch) before consuming"
    )
    expect_each_once(wait_handled(db, ids), ids, "after the prefetch test")


@pytest.mark.points(8, task=TASK)
def test_consumer_killed_mid_stream_loses_nothing_and_repeats_nothing(
    shop: httpx.Client,
    notifications: Notifications,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    item = create_item(shop)
    first = place_orders(shop, item["id"], 60)
    wait_handled(db, first)
    with notifications_locked(database_url):
        rest = place_orders(shop, item["id"], 140)  # the consumer blocks on the first of them
        wait_blocked(db, notifications, "SIGKILL mid-stream")
        notifications.kill()
    ids = first + rest
    notifications.start()
    counts = wait_handled(db, ids, timeout=60)
    handled = sum(1 for i in ids if i in counts)
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nkill test: {len(ids)} messages, {handled} handled, {duplicates} duplicates")
    expect_each_once(counts, ids, "a consumer SIGKILLed mid-message, then restarted")


@pytest.mark.points(6, task=TASK)
def test_sigterm_finishes_the_current_message_then_exits_0(
    shop: httpx.Client,
    notifications: Notifications,
    db: psycopg.Connection,
    database_url: str,
) -> None:
    item = create_item(shop)
    with notifications_locked(database_url):
        ids = place_orders(shop, item["id"], 30)
        wait_blocked(db, notifications, "SIGTERM mid-stream")
        notifications.terminate()
        code = notifications.wait_exit(1.0)
        assert code is None, (
            f"on SIGTERM the service must finish the message it is handling before it exits, "
            f"but it exited ({code}) while its INSERT was still waiting. Its log:\n"
            f"{notifications.log_tail()}"
        )
    code = notifications.wait_exit(10)
    assert code == 0, (
        f"after SIGTERM the service must finish the current message and exit with 0 within "
        f"10 s; exit code {code}. Its log:\n{notifications.log_tail()}"
    )
    done = sum(created_counts(db, ids, CREATED).values())
    assert done == 1, (
        f"the message being handled at SIGTERM must be finished (committed and acked), and no "
        f"new one started: {done} of the 30 orders were notified before the exit (want 1)"
    )
    notifications.start()
    expect_each_once(wait_handled(db, ids), ids, "SIGTERM, then a restart")
