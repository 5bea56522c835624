"""Publish events to RabbitMQ with pika, and answer only once the broker has confirmed them.

pika's BlockingConnection blocks the thread that uses it, and it is not thread-safe. So the
publisher owns a few threads (`AMQP_PUBLISHERS`), each with its own connection and channel,
and the event loop hands every publish to one of them (`await publisher.publish(...)`): the
loop keeps serving other requests while a thread waits for the broker's confirm.

What one publish promises (see `publish_blocking`):

- the exchange and the message are *durable* and *persistent*: a broker restart keeps them;
- the channel is in *confirm mode*: `basic_publish` returns only when the broker has taken
  responsibility for the message (written to disk for a persistent message in a durable
  queue). A `basic.nack` (a full queue with `x-overflow=reject-publish`) raises NackError;
- `mandatory=True`: a message that no queue receives (nobody bound to the routing key) comes
  back as UnroutableError instead of vanishing;
- a missing exchange closes the channel (404 NOT_FOUND): ChannelClosedByBroker.

Every refusal and every lost connection becomes `BrokerUnavailableError` (a 503 for the
client). A connection that died while idle (the broker closes connections whose heartbeats
stopped) is replaced and the publish tried once more: a second copy of a message is harmless,
because the message id lets the consumer drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    ChannelClosedByBroker,
    NackError,
    UnroutableError,
)

from app.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

PERSISTENT = 2  # delivery_mode: written to disk in a durable queue


@dataclass(frozen=True)
class Event:
    """One message: where it goes, what it is, and its id (the consumer's idempotency key)."""

    routing_key: str
    message_id: str
    body: bytes
    type: str


class BrokerRefused(Exception):
    """The broker said no (nack, unroutable, missing exchange): retrying will not help now."""


class Publisher:
    """Publish events with confirms from a small pool of threads, one connection each."""

    def __init__(
        self,
        amqp_url: str,
        exchange: str,
        *,
        threads: int = 4,
        timeout: float = 5.0,
        heartbeat: int = 30,
    ) -> None:
        self.exchange = exchange
        self.timeout = timeout
        self._params = pika.URLParameters(amqp_url)
        # Fail fast when the broker is unreachable: the client is waiting for its answer.
        self._params.connection_attempts = 1
        self._params.socket_timeout = timeout
        self._params.stack_timeout = timeout
        self._params.blocked_connection_timeout = timeout  # broker out of memory or disk
        self._params.heartbeat = heartbeat
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="amqp-publisher")
        self._local = threading.local()  # each thread's own connection and channel
        self._connections: list[pika.BlockingConnection] = []
        self._lock = threading.Lock()

    async def publish(self, event: Event) -> None:
        """Publish `event` and wait for the broker's confirm; BrokerUnavailableError if not."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.publish_blocking, event)
        try:
            async with asyncio.timeout(self.timeout):
                await future
        except TimeoutError:
            raise BrokerUnavailableError(
                f"Message broker unavailable: no confirm within {self.timeout:g} s"
            ) from None
        except BrokerRefused as exc:
            raise BrokerUnavailableError(f"Message broker refused the event: {exc}") from None
        except (AMQPError, OSError) as exc:
            raise BrokerUnavailableError(
                f"Message broker unavailable: {type(exc).__name__} {exc}".rstrip()
            ) from None

    def publish_blocking(self, event: Event) -> None:
        """Publish in this thread; return once confirmed. Runs in a publisher thread only."""
        for attempt in (1, 2):
            channel = self._channel()
            try:
                channel.basic_publish(
                    exchange=self.exchange,
                    routing_key=event.routing_key,
                    body=event.body,
                    properties=pika.BasicProperties(
                        delivery_mode=PERSISTENT,
                        message_id=event.message_id,
                        type=event.type,
                        content_type="application/json",
                    ),
                    mandatory=True,
                )
                return
            except UnroutableError:
                raise BrokerRefused(
                    f"no queue is bound to {self.exchange!r} with key {event.routing_key!r}"
                ) from None
            except NackError:
                raise BrokerRefused("the queue rejected the message (is it full?)") from None
            except ChannelClosedByBroker as exc:
                self._drop()  # the channel is gone; the next publish opens a new one
                raise BrokerRefused(f"{exc.reply_code} {exc.reply_text}") from None
            except (AMQPConnectionError, AMQPChannelError, OSError):
                self._drop()
                if attempt == 2:
                    raise
                log.info("broker connection lost; reconnecting to publish %s", event.message_id)

    def _channel(self) -> BlockingChannel:
        channel: BlockingChannel | None = getattr(self._local, "channel", None)
        if channel is not None and channel.is_open:
            return channel
        self._drop()
        connection = pika.BlockingConnection(self._params)
        with self._lock:
            self._connections.append(connection)
        self._local.connection = connection
        channel = connection.channel()
        channel.confirm_delivery()
        # Declaring is idempotent: the exchange exists after the first publisher connects.
        channel.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        self._local.channel = channel
        return channel

    def _drop(self) -> None:
        connection: Any = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        if connection is None:
            return
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        if connection.is_open:
            with contextlib.suppress(AMQPError, OSError):  # it was broken anyway
                connection.close()

    def close(self) -> None:
        """Wait for publishes in flight, then close every connection."""
        self._executor.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            # Each connection belongs to a thread that has finished: closing it here is safe.
            if connection.is_open:
                with contextlib.suppress(AMQPError, OSError):
                    connection.close()
