"""A small Redis cache that never takes the API down with it.

Every key starts with REDIS_PREFIX and gets a TTL. When Redis does not answer (any
`redis.RedisError`), the cache must behave like an empty cache: reads miss, writes are
skipped, one WARNING goes to the log, and the API keeps answering from PostgreSQL.
(Better still: after a failure, leave Redis alone for `retry_seconds`, so that requests do not
each wait for a timeout.)

`get_or_compute` adds the stampede guard: when a hot key expires, one request computes it
under a Redis lock (SET NX PX) and the others wait for its result instead of all running the
expensive query at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)

COUNTER_TTL = 86_400


class Cache:
    """Get, set and invalidate prefixed keys in Redis; a Redis failure is a miss."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        *,
        prefix: str,
        enabled: bool = True,
        lock_ms: int = 10_000,
        retry_seconds: float = 5.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.enabled = enabled  # False: behave as an empty cache (bench.py measures that)
        self.lock_ms = lock_ms
        self.retry_seconds = retry_seconds

    def key(self, name: str) -> str:
        """Return the full Redis key of `name` (with the prefix)."""
        return f"{self.prefix}{name}"

    def get(self, name: str) -> bytes | None:
        """Return the cached value, or None on a miss (or when Redis is unavailable)."""
        raise NotImplementedError("TODO(lab 3): GET the prefixed key; a RedisError is a miss")

    def set(self, name: str, value: bytes, ttl: int) -> None:
        """Store `value` for `ttl` seconds (nothing happens when Redis is unavailable)."""
        raise NotImplementedError("TODO(lab 3): SET the prefixed key with EX ttl")

    def invalidate(self, *names: str) -> None:
        """Delete the keys, so that the next read goes to the database."""
        raise NotImplementedError("TODO(lab 3): DEL the prefixed keys")

    def count(self, name: str) -> None:
        """Increment the counter `name` (a metric; kept for a day after its last change)."""
        if not self.enabled:
            return
        try:
            with self.client.pipeline() as pipe:
                pipe.incr(self.key(name)).expire(self.key(name), COUNTER_TTL).execute()
        except redis.RedisError as exc:
            log.warning("cache unavailable (Redis: %s); counter %s not counted", exc, name)

    def get_or_compute(
        self, name: str, compute: Callable[[], bytes], ttl: int
    ) -> tuple[bytes, bool]:
        """Return (value, True) from the cache, or (computed value, False).

        Of many requests that miss at once, only one may call `compute()`: it takes a lock
        (`SET <prefix>lock:<name> <random token> NX PX lock_ms`), computes, stores the value,
        and deletes the lock if it is still its own; the others poll the key until the value
        appears. Without Redis, everyone computes.
        """
        raise NotImplementedError("TODO(lab 3): cache-aside with a stampede lock")


def make_cache(
    url: str, prefix: str, *, enabled: bool, lock_ms: int, retry_seconds: float
) -> Cache:
    """Return a Cache on a Redis client with short timeouts (a slow cache is no cache)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    return Cache(
        client, prefix=prefix, enabled=enabled, lock_ms=lock_ms, retry_seconds=retry_seconds
    )
