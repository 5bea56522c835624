"""The grader's own view of RabbitMQ, and the notifications service as a child process.

`Rabbit` looks behind the services' backs with pika: how many messages wait in a queue, how
many consumers it has, what a dead-letter queue holds; it also publishes messages the shop
API never would (a poison message, a duplicate). `Notifications` starts, kills and stops
`python -m notifications` in the implementation folder. The tests put a
`shared.testing.tcp_proxy.TcpProxy` between a service and RabbitMQ to make the broker hang
(`stall()`: connections open, no answer) or vanish (`cut()`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
from pika.exceptions import AMQPError, ChannelClosedByBroker

from shared.testing.process import Child, StartError
from shared.testing.server import impl_env


@dataclass(frozen=True)
class Names:
    """The names the handout fixes for a QUEUE_PREFIX."""

    prefix: str

    @property
    def exchange(self) -> str:
        return f"{self.prefix}events"

    @property
    def work(self) -> str:
        return f"{self.prefix}notifications"

    @property
    def retry(self) -> str:
        return f"{self.work}.retry"

    @property
    def delay(self) -> str:
        return f"{self.work}.delay"

    @property
    def dead(self) -> str:
        return f"{self.work}.dead"

    def queues(self) -> list[str]:
        return [self.work, self.retry, self.delay, self.dead]


@dataclass
class Message:
    properties: Any
    body: bytes

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Rabbit:
    """One blocking connection for the grader; a new channel per operation (a channel error,
    such as a passive declare of a missing queue, closes only that channel)."""

    url: str
    created_queues: set[str] = field(default_factory=set)
    created_exchanges: set[str] = field(default_factory=set)
    _conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None or not self._conn.is_open:
            self._conn = pika.BlockingConnection(pika.URLParameters(self.url))
        return self._conn

    @contextlib.contextmanager
    def channel(self) -> Iterator[Any]:
        channel = self._connection().channel()
        try:
            yield channel
        finally:
            if channel.is_open:
                channel.close()

    def forget(self, names: Names) -> None:
        """Delete `names`' exchange and queues at the end of the run."""
        self.created_queues.update(names.queues())
        self.created_exchanges.add(names.exchange)

    def counts(self, queue: str) -> tuple[int, int] | None:
        """(messages ready, consumers) of `queue`; None if it does not exist."""
        try:
            with self.channel() as ch:
                ok = ch.queue_declare(queue, passive=True)
        except ChannelClosedByBroker:
            return None
        return int(ok.method.message_count), int(ok.method.consumer_count)

    def ready(self, queue: str) -> int:
        counts = self.counts(queue)
        return counts[0] if counts else 0

    def consumers(self, queue: str) -> int:
        counts = self.counts(queue)
        return counts[1] if counts else 0

    def declare_queue(self, queue: str, *, arguments: dict[str, Any] | None = None) -> None:
        with self.channel() as ch:
            ch.queue_declare(queue, durable=True, arguments=arguments)
        self.created_queues.add(queue)

    def declaration_refused(self, queue: str, arguments: dict[str, Any] | None) -> str | None:
        """Declare `queue` durable with `arguments`, as the handout describes it: None if
        RabbitMQ agrees (the existing queue is equivalent), else its reason for refusing
        (406 PRECONDITION_FAILED names the flag or argument that differs)."""
        try:
            with self.channel() as ch:
                ch.queue_declare(queue, durable=True, arguments=arguments)
        except ChannelClosedByBroker as exc:
            return f"{exc.reply_code} {exc.reply_text}"
        return None

    def declare_exchange(self, exchange: str) -> None:
        with self.channel() as ch:
            ch.exchange_declare(exchange, exchange_type="direct", durable=True)
        self.created_exchanges.add(exchange)

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        with self.channel() as ch:
            ch.queue_bind(queue, exchange, routing_key=routing_key)

    def delete_exchange(self, exchange: str) -> None:
        with self.channel() as ch:
            ch.exchange_delete(exchange)

    def purge(self, queue: str) -> None:
        with self.channel() as ch:
            ch.queue_purge(queue)

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None,
        type: str | None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish as a well-behaved producer would: persistent, confirmed, mandatory."""
        with self.channel() as ch:
            ch.confirm_delivery()
            ch.basic_publish(
                exchange,
                routing_key,
                body,
                properties=pika.BasicProperties(
                    delivery_mode=2,
                    message_id=message_id,
                    type=type,
                    content_type="application/json",
                    headers=headers,
                ),
                mandatory=True,
            )

    def take_all(self, queue: str) -> list[Message]:
        """Remove and return every message that waits in `queue` now."""
        messages: list[Message] = []
        with self.channel() as ch:
            while True:
                method, properties, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    return messages
                messages.append(Message(properties, body))

    def close(self) -> None:
        with contextlib.suppress(AMQPError, OSError):
            for queue in sorted(self.created_queues):
                with self.channel() as ch:
                    ch.queue_delete(queue)
            for exchange in sorted(self.created_exchanges):
                with self.channel() as ch:
                    ch.exchange_delete(exchange)
        if self._conn is not None and self._conn.is_open:
            with contextlib.suppress(AMQPError, OSError):
                self._conn.close()


class Notifications:
    """`python -m notifications` in the implementation folder, as its own process (group)."""

    def __init__(self, impl_dir: Path, env: dict[str, str], rabbit: Rabbit, names: Names) -> None:
        self.impl_dir = impl_dir
        self.env = env
        self.rabbit = rabbit
        self.names = names
        self.child: Child | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="hl-notifications-"))
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    def start(self, timeout: float = 60, *, consumers: int = 1) -> Notifications:
        """Start it; return once the work queue has `consumers` consumers (this one included:
        pass 2 for a second service on the same queue)."""
        self.starts += 1
        self.child = Child(
            "the notifications service (`python -m notifications`)",
            [sys.executable, "-m", "notifications"],
            impl_env(self.impl_dir, self.env),
            self.log_dir / f"notifications-{self.starts}.log",
            cwd=self.impl_dir,
        ).start()
        try:
            self.child.wait_until(
                lambda: self.rabbit.consumers(self.names.work) >= consumers,
                timeout=timeout,
                what=f"consuming from the queue {self.names.work}",
            )
        except StartError as exc:
            pytest.fail(str(exc), pytrace=False)
        return self

    def ensure_running(self) -> Notifications:
        return self if self.running else self.start()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; then wait until the broker noticed."""
        assert self.child is not None
        self.child.kill()
        wait_until(lambda: self.rabbit.consumers(self.names.work) == 0, 10, "the broker to "
                   "notice the killed consumer")  # fmt: skip

    def terminate(self) -> None:
        """Send SIGTERM (as `docker stop` or systemd does) and return at once."""
        assert self.child is not None
        self.child.signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        assert self.child is not None and self.child.process is not None
        try:
            return self.child.process.wait(timeout=timeout)
        except Exception:  # subprocess.TimeoutExpired
            return None

    def log_tail(self) -> str:
        return self.child.log_tail(20) if self.child else ""

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def close(self) -> None:
        """Stop it and delete its logs."""
        self.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> bool:
    """Poll `predicate` for up to `timeout` seconds; return whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# --------------------------------------------------------------------------- the database


def created_counts(db: psycopg.Connection, order_ids: list[int], kind: str) -> dict[int, int]:
    """Notification rows of `kind` per order id (orders without a row are left out)."""
    rows = db.execute(
        "SELECT order_id, count(*) FROM notifications WHERE kind = %s AND order_id = ANY(%s) "
        "GROUP BY order_id",
        (kind, order_ids),
    ).fetchall()
    return {int(order_id): int(count) for order_id, count in rows}


@contextlib.contextmanager
def notifications_locked(database_url: str) -> Iterator[psycopg.Connection]:
    """Hold a lock that makes every INSERT into notifications wait (reads still work)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE notifications IN EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            conn.rollback()


def blocked_writers(db: psycopg.Connection) -> int:
    """Connections of this database that wait for a lock (the consumer, mid-message)."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else 0
