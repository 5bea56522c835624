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
from notifications.messages import InvalidMessage, OrderCreated, Reminder, parse
from notifications.topology import ORDER_CREATED, ORDER_REMINDER, Names, declare

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
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

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
            # Our own publishes (retries, reminders, dead letters) are confirmed before we ack
            # the message they come from: otherwise a lost publish would lose the message.
            channel.confirm_delivery()
            declare(channel, self.settings)
            # Without a limit the broker pushes the whole queue into this process at once:
            # memory grows, and a second consumer gets nothing while we work through it.
            channel.basic_qos(prefetch_count=self.settings.notify_prefetch)
            self.channel = channel
            log.info("consuming %s (prefetch %d)", self.names.work, self.settings.notify_prefetch)
            # auto_ack=False: the broker keeps each message until we ack it explicitly.
            # inactivity_timeout: wake up twice a second to notice a stop request.
            for method, properties, body in channel.consume(
                self.names.work, auto_ack=False, inactivity_timeout=0.5
            ):
                if self.stop:
                    break  # a message yielded after the stop request stays unhandled
                if method is None:
                    continue
                self.handle(method, properties, body)
            requeued = channel.cancel()  # prefetched, unhandled messages go back to the queue
            log.info("consumer cancelled; %d prefetched message(s) returned to the queue", requeued)
        finally:
            self.channel = None
            if connection.is_open:
                with contextlib.suppress(AMQPError, OSError):
                    connection.close()

    # ------------------------------------------------------------------ one message

    def handle(self, method: Any, properties: Any, body: bytes) -> None:
        """Handle one delivery completely, ending with its ack."""
        headers: dict[str, Any] = dict(properties.headers or {})
        attempt = int(headers.get(ATTEMPT, 1))
        message_id = properties.message_id or f"(no id, delivery {method.delivery_tag})"
        try:
            message = parse(properties.type, body)
        except InvalidMessage as exc:
            self._dead_letter(properties, body, f"invalid message: {exc}", attempt)
        else:
            try:
                follow_up = self._work(message_id, message)
            except Exception as exc:  # any failure of the work is retried
                reason = f"{type(exc).__name__}: {str(exc).strip() or 'no message'}"
                self._failed(properties, body, reason, attempt)
            else:
                if follow_up is not None:
                    self._publish_reminder(*follow_up)
        self.channel.basic_ack(method.delivery_tag)

    def _work(
        self, message_id: str, message: OrderCreated | Reminder
    ) -> tuple[Reminder, int] | None:
        """Do the message's work and commit it; return a reminder to schedule, if any."""
        if isinstance(message, Reminder):
            wait = message.remind_at - dt.datetime.now(dt.UTC)
            if wait > EARLY_TOLERANCE:
                return message, _ms(wait)  # early: wait the rest
            self._save(
                message_id,
                message.order_id,
                ORDER_REMINDER,
                f"Reminder: your order #{message.order_id} of {message.item_name}",
            )
            return None
        self._save(
            message_id,
            message.id,
            ORDER_CREATED,
            f"Order #{message.id}: {message.quantity} x {message.item_name}, "
            f"total {message.total:.2f}",
        )
        remind_at = message.remind_at()
        if remind_at is None:
            return None
        # Scheduled again on a redelivery too (the commit may have happened before a crash);
        # the reminder's own message id makes a second copy harmless.
        reminder = Reminder(order_id=message.id, item_name=message.item_name, remind_at=remind_at)
        return reminder, max(_ms(remind_at - dt.datetime.now(dt.UTC)), 0)

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
        properties = pika.BasicProperties(
            delivery_mode=PERSISTENT,
            message_id=f"{ORDER_REMINDER}:{reminder.order_id}",
            type=ORDER_REMINDER,
            content_type="application/json",
            expiration=str(delay_ms),  # per-message TTL: then dead-lettered into the work queue
        )
        self._publish(self.names.delay, properties, reminder.model_dump_json().encode())

    def _failed(self, properties: Any, body: bytes, reason: str, attempt: int) -> None:
        if attempt >= self.settings.notify_max_attempts:
            self._dead_letter(properties, body, reason, attempt)
            return
        delay_ms = self.settings.notify_retry_delay_ms * 2 ** (attempt - 1)
        log.warning(
            "%s failed (attempt %d of %d, retry in %d ms): %s",
            properties.message_id,
            attempt,
            self.settings.notify_max_attempts,
            delay_ms,
            reason,
        )
        headers = {**(properties.headers or {}), ATTEMPT: attempt + 1, REASON: reason}
        self._publish(self.names.retry, _copy(properties, headers, str(delay_ms)), body)

    def _dead_letter(self, properties: Any, body: bytes, reason: str, attempt: int) -> None:
        log.error(
            "%s dead-lettered after %d attempt(s): %s", properties.message_id, attempt, reason
        )
        headers = {**(properties.headers or {}), ATTEMPTS: attempt, REASON: reason[:500]}
        self._publish(self.names.dead, _copy(properties, headers, None), body)


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
