"""Lab 5, task 4: deferred work and failures, with queues only (no plugin, no sleep).

A reminder waits in a delay queue: its per-message TTL (`expiration`) ends, and RabbitMQ
dead-letters it into the work queue. A message whose handling fails goes the same way to be
retried later (NOTIFY_RETRY_DELAY_MS, doubled per attempt), and after NOTIFY_MAX_ATTEMPTS it
is parked in the dead-letter queue with `x-failure-reason` and `x-attempts` headers. Waiting
never blocks the consumer: other messages keep flowing meanwhile.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import psycopg
import pytest

from labs.lab05_queue.tests.conftest import MAX_ATTEMPTS, QUEUE_MAX_LENGTH, RETRY_DELAY_MS
from labs.lab05_queue.tests.rabbit import (
    Message,
    Names,
    Notifications,
    Rabbit,
    created_counts,
    wait_until,
)
from labs.lab05_queue.tests.test_consumer import expect_each_once, place_orders, wait_handled
from labs.lab05_queue.tests.test_orders import post_order
from shared.testing.items import create_item, show

TASK = "4. Delays, retries and the dead-letter queue"
CREATED = "order.created"
REMINDER = "order.reminder"
# The retry pauses before the last attempt: 1000 + 2000 ms with the grader's settings.
RETRY_WAIT = sum(RETRY_DELAY_MS * 2**n for n in range(MAX_ATTEMPTS - 1)) / 1000
REMINDER_BOUND = 2.5  # seconds a reminder may come after its time
# Seconds the dead letter may come later than the retry pauses add up to (a busy machine).
RETRY_SLACK = 4.0
# An order behind a failing message is notified well before the first retry is due.
HELD_UP = RETRY_DELAY_MS / 1000 * 0.75


def notified_after(db: psycopg.Connection, ids: list[int]) -> float:
    """The longest time (s) from an order's creation to its notification."""
    row = db.execute(
        "SELECT max(extract(epoch FROM n.created_at - o.created_at)) FROM notifications n "
        "JOIN orders o ON o.id = n.order_id WHERE n.kind = %s AND n.order_id = ANY(%s)",
        (CREATED, ids),
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def event(
    order_id: int,
    item_name: str,
    remind_in_seconds: int | None = None,
    created_at: str = "2026-11-30T10:00:00+00:00",
) -> bytes:
    return json.dumps({
        "id": order_id, "item_id": 1, "item_name": item_name, "unit_price": 1.0,
        "quantity": 1, "total": 1.0, "remind_in_seconds": remind_in_seconds,
        "created_at": created_at,
    }).encode()  # fmt: skip


# Dead letters read so far, by queue: a test that reads the queue keeps the others' too.
_DEAD: dict[str, list[Message]] = {}


def dead_letters(rabbit: Rabbit, queue: str, message_id: str, timeout: float) -> list[Message]:
    """Wait for the dead letters of `message_id` in `queue`; return them."""
    seen = _DEAD.setdefault(queue, [])

    def found() -> list[Message]:
        return [m for m in seen if m.properties.message_id == message_id]

    def arrived() -> bool:
        seen.extend(rabbit.take_all(queue))
        return bool(found())

    wait_until(arrived, timeout, "")
    time.sleep(0.5)  # a second copy, if there is one, arrives by now
    seen.extend(rabbit.take_all(queue))
    return found()


@pytest.mark.points(8, task=TASK)
def test_a_poison_message_is_retried_later_then_dead_lettered_with_its_reason(
    shop: httpx.Client,
    notifications: Notifications,
    rabbit: Rabbit,
    main_names: Names,
    db: psycopg.Connection,
) -> None:
    # Valid JSON, a valid order, but PostgreSQL refuses the NUL character in its text: the
    # INSERT fails on every attempt, as a bug or bad data would make it.
    poison_id = 900_000_101
    message_id = f"{CREATED}:{poison_id}"
    started = time.monotonic()
    rabbit.publish(
        main_names.exchange, CREATED, event(poison_id, "mug\u0000"),
        message_id=message_id, type=CREATED,
    )  # fmt: skip
    # Orders placed after the poison flow while it waits for its retries.
    item = create_item(shop)
    ids = place_orders(shop, item["id"], 5)
    counts = wait_handled(db, ids, timeout=RETRY_WAIT)
    expect_each_once(counts, ids, "orders placed just after a failing message")
    slowest = notified_after(db, ids)
    assert slowest < HELD_UP, (
        f"an order placed just after a failing message was notified {slowest:.1f} s after it "
        f"was created: the failing message must wait for its retry in the retry queue "
        f"(per-message TTL), never by sleeping in the consumer (NOTIFY_RETRY_DELAY_MS="
        f"{RETRY_DELAY_MS})"
    )

    dead = dead_letters(rabbit, main_names.dead, message_id, RETRY_WAIT + 15)
    waited = time.monotonic() - started
    assert dead, (
        f"a message that fails every time must end in the dead-letter queue {main_names.dead} "
        f"after NOTIFY_MAX_ATTEMPTS={MAX_ATTEMPTS} attempts (it did not within "
        f"{RETRY_WAIT + 15:.0f} s)"
    )
    assert len(dead) == 1, f"exactly one copy belongs in the dead-letter queue, found {len(dead)}"
    headers = dead[0].headers
    assert headers.get("x-attempts") == MAX_ATTEMPTS, (
        f"the dead letter's `x-attempts` header must be {MAX_ATTEMPTS} (the attempts made), "
        f"headers: {headers}"
    )
    reason = headers.get("x-failure-reason")
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    assert isinstance(reason, str) and len(reason) > 5, (
        f"the dead letter's `x-failure-reason` header must say why it failed: {headers}"
    )
    assert dead[0].body == event(poison_id, "mug\u0000"), (
        "the dead letter must carry the original body, so it can be fixed and replayed"
    )
    assert dead[0].properties.delivery_mode == 2, (
        "the dead letter must be persistent (delivery_mode=2), like every copy the service "
        "publishes (retries, reminders): a broker restart would lose it"
    )
    assert RETRY_WAIT - 0.2 <= waited < RETRY_WAIT + RETRY_SLACK, (
        f"the message reached the dead-letter queue {waited:.1f} s after it was published; "
        f"the retries must wait {RETRY_DELAY_MS} ms, then twice that ({RETRY_WAIT:g} s in all)"
    )
    assert not created_counts(db, [poison_id], CREATED), "a failed message has no notification"


@pytest.mark.points(4, task=TASK)
def test_an_unreadable_message_is_dead_lettered_and_does_not_block_the_queue(
    shop: httpx.Client,
    notifications: Notifications,
    rabbit: Rabbit,
    main_names: Names,
    db: psycopg.Connection,
) -> None:
    message_id = "order.created:not-json"
    rabbit.publish(main_names.exchange, CREATED, b"{not json", message_id=message_id, type=CREATED)
    item = create_item(shop)
    ids = place_orders(shop, item["id"], 5)
    expect_each_once(wait_handled(db, ids), ids, "orders placed after an unreadable message")
    assert notifications.running, (
        f"an unreadable message must not stop the service. Its log:\n{notifications.log_tail()}"
    )
    dead = dead_letters(rabbit, main_names.dead, message_id, RETRY_WAIT + 15)
    assert dead, (
        "a message that is not JSON can never be handled: it must end in the dead-letter "
        f"queue {main_names.dead} (not be requeued forever, not be dropped)"
    )
    reason = dead[0].headers.get("x-failure-reason")
    assert reason, f"the dead letter needs an `x-failure-reason` header: {dead[0].headers}"
    attempts = dead[0].headers.get("x-attempts")
    assert attempts == 1, (
        f"a message that cannot be parsed goes to the dead-letter queue at once, after 1 "
        f"attempt (no retry makes it readable), but its `x-attempts` header says {attempts!r}"
    )


def reminder_delay(db: psycopg.Connection, order_id: int) -> float | None:
    row = db.execute(
        "SELECT extract(epoch FROM n.created_at - o.created_at) FROM notifications n "
        "JOIN orders o ON o.id = n.order_id WHERE n.kind = %s AND n.order_id = %s",
        (REMINDER, order_id),
    ).fetchone()
    return float(row[0]) if row else None


@pytest.mark.points(10, task=TASK)
def test_a_reminder_comes_after_its_delay_and_not_much_later(
    shop: httpx.Client,
    notifications: Notifications,
    db: psycopg.Connection,
    rabbit: Rabbit,
    main_names: Names,
) -> None:
    item = create_item(shop)
    ordered = time.monotonic()
    r = post_order(shop, item["id"], remind_in_seconds=3)
    assert r.status_code == 201, f"an order with remind_in_seconds=3 must answer 201: {show(r)}"
    order = r.json()
    assert order.get("remind_in_seconds") == 3, f"the order must keep its reminder: {order}"
    plain = post_order(shop, item["id"]).json()["id"]

    wait_handled(db, [order["id"], plain])
    time.sleep(max(0.0, ordered + 1.5 - time.monotonic()))
    # Looked at only while the 3 s are surely not over (a busy machine may have taken longer to
    # handle the order); the timestamps below catch an early reminder in any case.
    if time.monotonic() - ordered < 2.5:
        early = created_counts(db, [order["id"]], REMINDER)
        assert not early, "the reminder was handled before its 3 s were over"
    wait_until(lambda: reminder_delay(db, order["id"]) is not None, 3 + REMINDER_BOUND + 2, "")
    delay = reminder_delay(db, order["id"])
    assert delay is not None, (
        f"no reminder ({REMINDER}) row for the order {3 + REMINDER_BOUND + 2:.0f} s after it: "
        "publish it to the delay queue with expiration='3000'; the delay queue dead-letters "
        "it into the work queue when the TTL ends"
    )
    assert 3.0 <= delay <= 3.0 + REMINDER_BOUND, (
        f"the reminder came {delay:.2f} s after the order; it must come after 3 s and within "
        f"{REMINDER_BOUND:g} s after that"
    )
    time.sleep(1.0)
    assert created_counts(db, [order["id"]], REMINDER) == {order["id"]: 1}, (
        "exactly one reminder per order"
    )
    assert not created_counts(db, [plain], REMINDER), "an order without a reminder gets none"

    # An event handled late (say the consumer was behind by 5 s): its reminder is due at
    # created_at + remind_in_seconds, not remind_in_seconds after the handling.
    late_id = 900_000_202
    row = db.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    now = row[0]
    created_at = (now - dt.timedelta(seconds=5)).isoformat()
    rabbit.publish(
        main_names.exchange, CREATED, event(late_id, "late mug", 6, created_at),
        message_id=f"{CREATED}:{late_id}", type=CREATED,
    )  # fmt: skip

    def late_delay() -> float | None:
        row = db.execute(
            "SELECT extract(epoch FROM created_at - %s) FROM notifications "
            "WHERE kind = %s AND order_id = %s",
            (now, REMINDER, late_id),
        ).fetchone()
        return float(row[0]) if row else None

    wait_until(lambda: late_delay() is not None, 6 + REMINDER_BOUND, "")
    late = late_delay()
    assert late is not None and late <= 1 + REMINDER_BOUND, (
        f"an order created 5 s before its event was handled, with remind_in_seconds=6, got "
        f"{'no reminder' if late is None else f'its reminder {late:.1f} s after the handling'}"
        ": it is "
        "due 1 s after (expiration = the milliseconds left until created_at + "
        "remind_in_seconds, as the handout says)"
    )


@pytest.mark.points(3, task=TASK)
def test_the_queues_are_durable_with_the_handouts_arguments(
    notifications: Notifications, rabbit: Rabbit, main_names: Names
) -> None:
    back_to_work: dict[str, object] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": main_names.work,
    }
    expected: dict[str, dict[str, object] | None] = {
        main_names.work: {"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "reject-publish"},
        main_names.retry: back_to_work,
        main_names.delay: back_to_work,
        main_names.dead: None,
    }
    for queue, arguments in expected.items():
        assert rabbit.counts(queue) is not None, (
            f"the notifications service must declare the queue {queue} when it starts"
        )
        refused = rabbit.declaration_refused(queue, arguments)
        assert refused is None, (
            f"the queue {queue} must be durable (a broker restart keeps what waits in it) with "
            f"the arguments {arguments or 'none'}; RabbitMQ compared that declaration with "
            f"your queue and refused it: {refused}"
        )
