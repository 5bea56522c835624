"""Start a lab's service for a load run: the API, and the notifications consumer if it has one.

Used by lab 7's grading tests and by `make load-summary`. From lab 5 on, the shop API answers
`POST /orders` with 201 only when RabbitMQ confirmed the order's event, and the broker
confirms only a message that reaches a queue: the notifications service declares and binds
that queue. So the API is handed out only once the queue exists. Both start at the same time:
the API opens its RabbitMQ connections on the first publish, so it does not need the queue to
start, and two processes importing their code in parallel start in about half the time.

Every RabbitMQ name starts with the run's QUEUE_PREFIX (`<prefix>events`,
`<prefix>notifications`, ...); `delete_queues` removes them at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pika
from pika.exceptions import AMQPError

from shared.testing.process import Child
from shared.testing.server import AppServer, impl_env

QUEUE_SUFFIXES = ("notifications", "notifications.retry", "notifications.delay",
                  "notifications.dead")  # fmt: skip


def has_consumer(impl: Path) -> bool:
    return (impl / "notifications" / "__main__.py").is_file()


def queue_exists(amqp_url: str, queue: str) -> bool:
    """Whether RabbitMQ has `queue` (a passive declare; a missing queue closes the channel)."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except AMQPError:
        return False
    try:
        connection.channel().queue_declare(queue, passive=True)
        return True
    except AMQPError:
        return False
    finally:
        with contextlib.suppress(AMQPError):
            connection.close()


def delete_queues(amqp_url: str, prefix: str) -> None:
    """Delete the queues and the exchange of QUEUE_PREFIX `prefix` (those that exist)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        for suffix in QUEUE_SUFFIXES:
            connection.channel().queue_delete(f"{prefix}{suffix}")
        connection.channel().exchange_delete(f"{prefix}events")
    finally:
        connection.close()


def wait_for_queue(child: Child, env: dict[str, str]) -> None:
    """Wait until the consumer `child` has declared its work queue."""
    work_queue = f"{env['QUEUE_PREFIX']}notifications"
    child.wait_until(
        lambda: queue_exists(env["AMQP_URL"], work_queue),
        timeout=30,
        what=f"declaring the queue {work_queue}",
    )


@contextlib.contextmanager
def consumer(impl: Path, env: dict[str, str], *, wait: bool = True) -> Iterator[Child | None]:
    """Run `python -m notifications` in `impl` (if it has one); with `wait`, until its queue
    exists (without it, call `wait_for_queue` before the queue is needed)."""
    if not has_consumer(impl):
        yield None
        return
    fd, log = tempfile.mkstemp(prefix="hl-notifications-", suffix=".log")
    os.close(fd)
    child = Child(
        f"`python -m notifications` in {impl}",
        [sys.executable, "-m", "notifications"],
        impl_env(impl, env),
        Path(log),
        cwd=impl,
    )
    try:
        child.start()
        if wait:
            wait_for_queue(child, env)
        yield child
    finally:
        child.stop()
        Path(log).unlink(missing_ok=True)


@contextlib.contextmanager
def service(impl: Path, env: dict[str, str]) -> Iterator[AppServer]:
    """The notifications consumer (if any) and the API of `impl`; yield the API's server.

    `env` needs AMQP_URL and QUEUE_PREFIX when `impl` has a consumer; its queues are deleted
    at the end.
    """
    try:
        with consumer(impl, env, wait=False) as notifications, AppServer(impl, env) as server:
            if notifications is not None:
                wait_for_queue(notifications, env)
            yield server
    finally:
        if has_consumer(impl):
            delete_queues(env["AMQP_URL"], env["QUEUE_PREFIX"])
