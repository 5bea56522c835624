"""Lab 5 bench: what publisher confirms and consumer prefetch cost, in messages per second.

    .venv/bin/python labs/lab05_queue/bench.py                  # ~30 s
    .venv/bin/python labs/lab05_queue/bench.py --messages 5000  # more, steadier numbers

Publishing: persistent messages (300 bytes) into a durable queue, with publisher confirms,
three ways:
- one confirm per message (pika's BlockingConnection after confirm_delivery(): each
  basic_publish waits for its confirm; this is what the lab's API does per order);
- in batches (pika's asynchronous SelectConnection: publish 100, wait until all 100 are
  confirmed, then the next 100);
- asynchronously (SelectConnection, up to 1000 unconfirmed at any time; each confirm frees a
  slot).
Consuming: the queue filled, then drained by one consumer that acks each message by hand,
with prefetch 1 and with prefetch 50.

Everything talks to the RabbitMQ of AMQP_URL (from the environment or `.env`) on queues named
`bench.<random>.*`, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.settings import ServiceSettings

BODY = b"x" * 300
PERSISTENT = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")


def per_message(url: str, queue: str, count: int) -> float:
    """Blocking publisher, one confirm per message; returns seconds."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", queue, BODY, properties=PERSISTENT, mandatory=True)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def windowed(url: str, queue: str, count: int, window: int, *, batches: bool) -> float:
    """Asynchronous publisher with confirms; at most `window` unconfirmed messages.

    `batches`: publish `window` messages, then wait until every one is confirmed. Otherwise
    a new message goes out as soon as a confirm frees a slot. Returns seconds.
    """
    state: dict[str, Any] = {"sent": 0, "confirmed": 0, "nacked": 0, "started": 0.0, "end": 0.0}
    channel_box: list[Any] = []

    def pump() -> None:
        channel = channel_box[0]
        unconfirmed = state["sent"] - state["confirmed"]
        if batches and unconfirmed:
            return  # wait for the whole batch
        while state["sent"] < count and state["sent"] - state["confirmed"] < window:
            channel.basic_publish("", queue, BODY, properties=PERSISTENT)
            state["sent"] += 1

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        done = tag if method.multiple else state["confirmed"] + 1
        # Confirms come in order; `multiple` confirms everything up to the tag.
        state["confirmed"] = max(state["confirmed"], done)
        if isinstance(method, pika.spec.Basic.Nack):
            state["nacked"] += 1
        if state["confirmed"] >= count:
            state["end"] = time.perf_counter()
            channel_box[0].connection.close()
        else:
            pump()

    def on_channel(channel: Any) -> None:
        channel_box.append(channel)
        channel.confirm_delivery(on_confirm)
        state["started"] = time.perf_counter()
        pump()

    def on_open(connection: Any) -> None:
        connection.channel(on_open_callback=on_channel)

    def on_closed(connection: Any, reason: Any) -> None:
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=on_open, on_close_callback=on_closed
    )
    connection.ioloop.start()
    if state["confirmed"] < count or state["nacked"]:
        raise RuntimeError(f"publishing stopped early: {state}")
    return float(state["end"] - state["started"])


def consume(url: str, queue: str, count: int, prefetch: int) -> float:
    """Drain `count` messages with manual acks and the given prefetch; returns seconds."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=prefetch)
    started = time.perf_counter()
    deliveries = channel.consume(queue, auto_ack=False, inactivity_timeout=5)
    for received, (method, _props, _body) in enumerate(deliveries, start=1):
        if method is None:
            raise RuntimeError(f"the queue ran dry after {received - 1} of {count} messages")
        channel.basic_ack(method.delivery_tag)
        if received == count:
            break
    seconds = time.perf_counter() - started
    channel.cancel()
    conn.close()
    return seconds


def fill(url: str, queue: str, count: int) -> None:
    windowed(url, queue, count, 1000, batches=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=3000, help="messages per row")
    args = parser.parse_args(argv)
    count = args.messages
    url = os.environ.get("AMQP_URL") or ServiceSettings().amqp_url
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    queues: list[str] = []
    conn = pika.BlockingConnection(pika.URLParameters(url))
    admin = conn.channel()

    def fresh(name: str) -> str:
        queue = prefix + name
        admin.queue_declare(queue, durable=True)
        queues.append(queue)
        return queue

    rows: list[tuple[str, float]] = []

    def row(label: str, run: Callable[[], float]) -> None:
        seconds = run()
        rows.append((label, count / seconds))
        print(f"  {label:<52} {count / seconds:>9,.0f} msg/s", flush=True)

    try:
        print(f"RabbitMQ {url.rpartition('@')[2]}: {count} persistent messages of "
              f"{len(BODY)} bytes per row, durable queues")  # fmt: skip
        print("publish (with publisher confirms)")
        row("one confirm per message (BlockingConnection)",
            lambda: per_message(url, fresh("p1"), count))  # fmt: skip
        row("batches of 100, wait for each batch (SelectConnection)",
            lambda: windowed(url, fresh("p2"), count, 100, batches=True))  # fmt: skip
        row("asynchronous, up to 1000 unconfirmed (SelectConnection)",
            lambda: windowed(url, fresh("p3"), count, 1000, batches=False))  # fmt: skip
        print("consume (manual ack per message, one consumer)")
        for prefetch in (1, 50):
            queue = fresh(f"c{prefetch}")
            fill(url, queue, count)
            row(f"prefetch {prefetch}", lambda q=queue, p=prefetch: consume(url, q, count, p))  # type: ignore[misc]
        base = rows[0][1]
        print(f"batched / per-message confirms: {rows[1][1] / base:.1f}x; "
              f"asynchronous: {rows[2][1] / base:.1f}x; "
              f"prefetch 50 / prefetch 1: {rows[4][1] / rows[3][1]:.1f}x")  # fmt: skip
    finally:
        for queue in queues:
            admin.queue_delete(queue)
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
