"""The exchange and the queues of the notifications service, declared at every (re)connect.

    shop API --order.created--> <P>events (direct) --order.created--> <P>notifications
                                                                           |   ^
         consumer: handling failed, attempt n < max --------> <P>notifications.retry
         consumer: reminder, due in N s ------------------> <P>notifications.delay
                   (per-message TTL; when it expires the message is dead-lettered back
                    into <P>notifications through the default exchange)
         consumer: failed max times, or unreadable -------> <P>notifications.dead (DLQ)

<P> is QUEUE_PREFIX. Declaring is idempotent: the same name with the same arguments is a no-op,
the same name with other arguments is an error (PRECONDITION_FAILED), so the arguments live
here only. The consumer owns its queues and binds them; the shop API declares only the exchange
and publishes with `mandatory`, so until this service has run once, orders answer 503.

Why two delay queues: RabbitMQ expires messages only at the head of a queue, so a message
with a 60 s TTL holds back a 1 s message queued behind it. Retries (short, similar delays)
and reminders (any delay a client asks for) do not wait behind each other.
"""

from dataclasses import dataclass
from typing import Any

from notifications.config import Settings

ORDER_CREATED = "order.created"
ORDER_REMINDER = "order.reminder"


@dataclass(frozen=True)
class Names:
    exchange: str
    work: str
    retry: str
    delay: str
    dead: str

    @classmethod
    def of(cls, prefix: str) -> "Names":
        work = f"{prefix}notifications"
        return cls(
            exchange=f"{prefix}events",
            work=work,
            retry=f"{work}.retry",
            delay=f"{work}.delay",
            dead=f"{work}.dead",
        )


def declare(channel: Any, settings: Settings) -> Names:
    """Declare the exchange, the four queues and the binding; return their names."""
    names = Names.of(settings.queue_prefix)
    channel.exchange_declare(names.exchange, exchange_type="direct", durable=True)
    channel.queue_declare(
        names.work,
        durable=True,
        arguments={
            "x-max-length": settings.notify_queue_max_length,
            "x-overflow": "reject-publish",
        },
    )
    channel.queue_bind(names.work, names.exchange, routing_key=ORDER_CREATED)
    # A message that expires in a waiting queue goes back to the work queue: the default
    # exchange ("") routes by queue name.
    back_to_work = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": names.work}
    channel.queue_declare(names.retry, durable=True, arguments=back_to_work)
    channel.queue_declare(names.delay, durable=True, arguments=back_to_work)
    channel.queue_declare(names.dead, durable=True)
    return names
