"""Container healthcheck of the notifications service: `python -m notifications.healthcheck`.

The service has no HTTP port to probe, so "healthy" means what the shop API relies on: the
work queue exists (the service declared its topology) and at least one consumer reads it.
Exit 0 when so, 1 otherwise (with the reason on stderr), as Docker's HEALTHCHECK expects.
"""

import sys

import pika
from pika.exceptions import AMQPError

from notifications.config import get_settings
from notifications.topology import Names


def main() -> int:
    settings = get_settings()
    params = pika.URLParameters(settings.amqp_url)
    params.connection_attempts = 1
    params.socket_timeout = 3
    work = Names.of(settings.queue_prefix).work
    try:
        connection = pika.BlockingConnection(params)
        try:
            # passive: only look; a missing queue closes the channel with 404 (an AMQPError).
            declared = connection.channel().queue_declare(work, passive=True)
        finally:
            if connection.is_open:
                connection.close()
    except (AMQPError, OSError) as exc:
        sys.stderr.write(f"unhealthy: queue {work!r}: {type(exc).__name__}: {exc}\n")
        return 1
    consumers = declared.method.consumer_count
    if consumers < 1:
        sys.stderr.write(f"unhealthy: nobody consumes {work!r}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
