"""The notifications table: one INSERT per message, idempotent by message id.

A message can arrive twice: the broker redelivers every message that was not acknowledged
when a consumer died, even if that consumer had already committed its work. So the message id
is a unique column, and `ON CONFLICT (message_id) DO NOTHING` makes the second delivery a
no-op. The insert and its commit come before the ack: a crash in between is a redelivery
that changes nothing, never a lost message.
"""

import psycopg

from shared.settings import plain_postgres_url

INSERT = """
INSERT INTO notifications (message_id, order_id, kind, text)
VALUES (%s, %s, %s, %s)
ON CONFLICT (message_id) DO NOTHING
"""


def connect(database_url: str) -> psycopg.Connection:
    # autocommit: each `with conn.transaction()` below is one explicit BEGIN ... COMMIT.
    return psycopg.connect(plain_postgres_url(database_url), autocommit=True, connect_timeout=5)


def save_notification(
    conn: psycopg.Connection, *, message_id: str, order_id: int, kind: str, text: str
) -> bool:
    """Insert and commit one notification; False if this message id was already handled."""
    with conn.transaction():
        cursor = conn.execute(INSERT, (message_id, order_id, kind, text))
        created = cursor.rowcount == 1
    return created
