"""The notifications service: a second process that consumes the shop's order events.

It reads `order.created` from RabbitMQ and writes a notification row in PostgreSQL for each,
schedules reminders through a delay queue, retries failed messages later and parks the ones
that keep failing in a dead-letter queue. Run it with `python -m notifications` from the
folder that holds this package (the same folder as the shop's `app`).

    config.py     its settings (QUEUE_PREFIX, NOTIFY_PREFETCH, NOTIFY_MAX_ATTEMPTS, ...)
    topology.py   the exchange and queues it declares, and their arguments
    messages.py   the messages it understands (pydantic), and the ones it sends itself
    store.py      the notifications table: one idempotent INSERT per message
    consumer.py   the loop: prefetch, manual acks after commit, retries, SIGTERM
"""
