"""Give each test run its own database, Redis key prefix and RabbitMQ queue names.

Everything a run creates carries its run id, and everything is removed at the end, so a run
never sees or touches a user's data or another run's.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql

from shared.services import _maintenance_url
from shared.settings import plain_postgres_url


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


@contextlib.contextmanager
def temporary_database(server_url: str, run_id: str, suffix: str = "") -> Iterator[str]:
    """Create `hl_test_<run_id><suffix>` on the server of `server_url`; yield its URL; drop it."""
    name = f"hl_test_{run_id}{suffix}"
    admin = _maintenance_url(server_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(plain_postgres_url(server_url))._replace(path=f"/{name}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            # FORCE ends connections a crashed server under test may have left open.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete every key that starts with `prefix`; return how many were deleted."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


@dataclass
class QueueNames:
    """Hands out queue names under one run prefix and deletes them all at the end."""

    amqp_url: str
    prefix: str
    issued: list[str] = field(default_factory=list)

    def __call__(self, name: str) -> str:
        full = f"{self.prefix}{name}"
        if full not in self.issued:
            self.issued.append(full)
        return full

    def cleanup(self) -> None:
        if not self.issued:
            return
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            for name in self.issued:
                channel = conn.channel()
                channel.queue_delete(queue=name)
                channel.close()
        finally:
            conn.close()
