"""The consumer loop: at-least-once delivery made exactly-once in effect.

For each message the broker hands us (at most NOTIFY_PREFETCH unacknowledged at once):

1. read it; a message we cannot read goes to the dead-letter queue at once (no retry helps);
2. do its work in one PostgreSQL transaction and COMMIT (idempotent by message id);
3. publish what follows from it (a reminder into the delay queue) and wait for the confirm;
4. only then ACK. A crash anywhere before the ack means a redelivery, never a loss.

If step 2 fails, a copy goes to the retry queue with the attempt number in its headers and a
per-message TTL (NOTIFY_RETRY_DELAY_MS, doubled per attempt); when the TTL ends RabbitMQ
dead-letters it back into the work queue. After NOTIFY_MAX_ATTEMPTS the copy goes to the
dead-letter queue instead, with `x-failure-reason` and `x-attempts`. Either way the original
is acked after the copy was confirmed, so the work queue never blocks on a poison message.

SIGTERM (and Ctrl+C) only sets a flag: the message being handled finishes (commit, ack), the
consumer is cancelled (RabbitMQ requeues what was prefetched but not handled), the connection
closes, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from types import FrameType
from typing import Any

import pika
import psycopg
from pika.exceptions import AMQPError

from notifications import store
from notifications.config import Settings
from notifications.messages import InvalidMessage, OrderCreated, Reminder, parse  # noqa: F401
from notifications.topology import ORDER_CREATED, ORDER_REMINDER, Names, declare  # noqa: F401

log = logging.getLogger("notifications")

PERSISTENT = 2
ATTEMPT = "x-attempt"  # which attempt this delivery is (absent: the first)
ATTEMPTS = "x-attempts"  # on a dead-lettered message: how many attempts were made
REASON = "x-failure-reason"  # why the last attempt failed
# A reminder that arrives earlier than this before its time is sent back to wait.
EARLY_TOLERANCE = dt.timedelta(milliseconds=20)


class Stop:
    """Set by SIGTERM/SIGINT; the loop checks it between messages, never in the middle."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        # TODO(lab 5): make SIGTERM and SIGINT call self._handle: signal.signal(signal.SIGTERM,
        # self._handle), the same for SIGINT. Until then SIGTERM ends the process at once, in
        # the middle of a message (and Ctrl+C raises KeyboardInterrupt wherever it lands).
        log.warning("TODO(lab 5): SIGTERM is not handled yet")

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the current message, then stopping", signal.Signals(signum).name
        )
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


class Consumer:
    """One connection to RabbitMQ and one to PostgreSQL; handles messages one at a time."""

    def __init__(self, settings: Settings, stop: Stop) -> None:
        self.settings = settings
        self.stop = stop
        self.names = Names.of(settings.queue_prefix)
        self.db: psycopg.Connection | None = None
        self.channel: Any = None

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Consume until stopped; reconnect (with a growing pause) when a connection fails."""
        pause = 0.2
        while not self.stop:
            try:
                self._consume_until_stopped()
                pause = 0.2
            except (AMQPError, OSError) as exc:
                log.warning(
                    "broker connection lost (%s: %s); reconnecting in %.1f s",
                    type(exc).__name__,
                    exc,
                    pause,
                )
                self.stop.event.wait(pause)
                pause = min(pause * 2, self.settings.notify_reconnect_max_delay)
        if self.db is not None:
            self.db.close()
        log.info("stopped")
        return 0

    def _connection_parameters(self) -> pika.URLParameters:
        params = pika.URLParameters(self.settings.amqp_url)
        params.heartbeat = self.settings.amqp_heartbeat
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.blocked_connection_timeout = 30
        return params

    def _consume_until_stopped(self) -> None:
        connection = pika.BlockingConnection(self._connection_parameters())
        try:
            channel = connection.channel()
            channel.confirm_delivery()  # our own publishes wait for the broker's confirm
            declare(channel, self.settings)
            self.channel = channel
            # TODO(lab 5): the consumer loop.
            # - a prefetch limit first: channel.basic_qos(prefetch_count=...notify_prefetch);
            # - for method, properties, body in channel.consume(self.names.work,
            #   auto_ack=False, inactivity_timeout=0.5):
            #       stop requested (`if self.stop`)? break before touching the message;
            #       method None (nothing came for 0.5 s)? continue;
            #       else self.handle(method, properties, body)   (it acks);
            # - then channel.cancel(): the prefetched, unhandled messages go back to the queue.
            raise NotImplementedError("TODO(lab 5): the consumer loop (prefetch, manual acks)")
        finally:
            self.channel = None
            if connection.is_open:
                with contextlib.suppress(AMQPError, OSError):
                    connection.close()

    # ------------------------------------------------------------------ one message

    def handle(self, method: Any, properties: Any, body: bytes) -> None:
        """Handle one delivery completely, ending with its ack."""
        # TODO(lab 5): one message, in this order:
        # - attempt = int(headers.get(ATTEMPT, 1)) from `properties.headers or {}`;
        # - message = parse(properties.type, body); InvalidMessage: self._dead_letter(...) at
        #   once (no retry will make it readable);
        # - follow_up = self._work(message_id, message), which commits; any exception:
        #   self._failed(properties, body, f"{type(exc).__name__}: {exc}", attempt);
        # - a follow_up (a reminder) is published: self._publish_reminder(*follow_up);
        # - last of all: self.channel.basic_ack(method.delivery_tag).
        raise NotImplementedError("TODO(lab 5): Consumer.handle")

    def _work(
        self, message_id: str, message: OrderCreated | Reminder
    ) -> tuple[Reminder, int] | None:
        """Do the message's work and commit it; return a reminder to schedule, if any."""
        if isinstance(message, Reminder):
            # TODO(lab 5, task 4): a reminder: if it is still early (more than
            # EARLY_TOLERANCE before message.remind_at), return (message, ms left) to send it
            # back to wait; else save an ORDER_REMINDER notification and return None.
            raise NotImplementedError("TODO(lab 5): reminders")
        self._save(
            message_id,
            message.id,
            ORDER_CREATED,
            f"Order #{message.id}: {message.quantity} x {message.item_name}, "
            f"total {message.total:.2f}",
        )
        # TODO(lab 5, task 4): an order with remind_in_seconds: return (Reminder(...), ms until
        # message.remind_at()), also on a redelivery (the reminder's own id dedupes it).
        return None

    def _save(self, message_id: str, order_id: int, kind: str, text: str) -> None:
        if self.db is None or self.db.closed or self.db.broken:
            self.db = store.connect(self.settings.database_url)
        try:
            created = store.save_notification(
                self.db, message_id=message_id, order_id=order_id, kind=kind, text=text
            )
        except psycopg.OperationalError:
            self.db.close()  # reconnect for the next message
            raise
        log.debug("%s %s", "handled" if created else "duplicate, skipped", message_id)

    # ------------------------------------------------------------------ publishing

    def _publish(self, queue: str, properties: Any, body: bytes) -> None:
        # The default exchange routes by queue name; confirm mode makes this wait for the
        # broker, and `mandatory` turns a missing queue into an error instead of a loss.
        self.channel.basic_publish("", queue, body, properties=properties, mandatory=True)

    def _publish_reminder(self, reminder: Reminder, delay_ms: int) -> None:
        # TODO(lab 5, task 4): publish the reminder (message id f"{ORDER_REMINDER}:<order id>",
        # type ORDER_REMINDER, persistent) to self.names.delay with expiration=str(delay_ms):
        # when the TTL ends, the delay queue dead-letters it into the work queue.
        raise NotImplementedError("TODO(lab 5): publish a reminder to the delay queue")

    def _failed(self, properties: Any, body: bytes, reason: str, attempt: int) -> None:
        # TODO(lab 5, task 4): attempt >= notify_max_attempts: self._dead_letter(...); else a
        # copy to self.names.retry with headers {ATTEMPT: attempt + 1, REASON: reason} and
        # expiration = notify_retry_delay_ms * 2 ** (attempt - 1) (see _copy).
        raise NotImplementedError(f"TODO(lab 5): retries (this attempt failed: {reason})")

    def _dead_letter(self, properties: Any, body: bytes, reason: str, attempt: int) -> None:
        # TODO(lab 5, task 4): a copy to self.names.dead with headers {ATTEMPTS: attempt,
        # REASON: reason} (see _copy), so that someone can read why, fix it and replay it.
        raise NotImplementedError(f"TODO(lab 5): the dead-letter queue (reason: {reason})")


def _copy(properties: Any, headers: dict[str, Any], expiration: str | None) -> Any:
    """The same message (id, type, ...) with new headers and TTL."""
    return pika.BasicProperties(
        delivery_mode=PERSISTENT,
        message_id=properties.message_id,
        type=properties.type,
        content_type=properties.content_type,
        timestamp=properties.timestamp,
        headers=headers,
        expiration=expiration,
    )


def _ms(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def run(settings: Settings) -> int:
    """Consume until SIGTERM or Ctrl+C; return the exit code (0)."""
    stop = Stop()
    stop.install()
    return Consumer(settings, stop).run()
