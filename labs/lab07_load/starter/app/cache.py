"""A small Redis cache that never takes the API down with it (async: redis.asyncio).

Every key starts with REDIS_PREFIX and gets a TTL. When Redis does not answer, the cache
behaves like an empty cache (reads miss, writes are skipped), logs one warning, and leaves
Redis alone for `cache_retry_seconds` so that requests do not each wait for a timeout; the
API keeps answering from PostgreSQL.

`get_or_compute` adds the stampede guard: when a hot key expires, one request computes it
under a Redis lock (SET NX PX) and the others wait for its result instead of all running the
expensive query at once. The waiters wait with `await asyncio.sleep`: a `time.sleep` here
would stop every other request on the event loop for the length of each poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Delete the lock only if it is still ours: a slow holder whose lock expired must not delete
# the lock that another request took since.
UNLOCK_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""
LOCK_POLL_SECONDS = 0.02  # the first pause of a waiter; each next one is 1.5 times longer
LOCK_POLL_MAX_SECONDS = 0.2
REDIS_TIMEOUT = 2.0
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
        self.enabled = enabled
        self.lock_ms = lock_ms
        self.retry_seconds = retry_seconds
        self._skip_until = 0.0  # monotonic time before which Redis is not tried again

    async def close(self) -> None:
        """Close the client's connections (on shutdown)."""
        # aclose() is redis-py 5's name; the types-redis stubs only know the older close().
        await self.client.aclose()  # type: ignore[attr-defined]

    def key(self, name: str) -> str:
        """Return the full Redis key of `name` (with the prefix)."""
        return f"{self.prefix}{name}"

    async def get(self, name: str) -> bytes | None:
        """Return the cached value, or None on a miss (or when Redis is unavailable)."""
        if not self._usable():
            return None
        try:
            value = await self.client.get(self.key(name))
        except RedisError as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value if isinstance(value, bytes) else None

    async def set(self, name: str, value: bytes, ttl: int) -> None:
        """Store `value` for `ttl` seconds (nothing happens when Redis is unavailable)."""
        if not self._usable():
            return
        try:
            await self.client.set(self.key(name), value, ex=ttl)
        except RedisError as exc:
            self._failed(exc)

    async def invalidate(self, *names: str) -> None:
        """Delete the keys, so that the next read goes to the database."""
        if not self._usable() or not names:
            return
        try:
            await self.client.delete(*(self.key(n) for n in names))
        except RedisError as exc:
            # The database changed but the old value may stay until its TTL ends: say so.
            log.error("cache invalidation of %s failed; stale until TTL: %s", names, exc)
            self._failed(exc)

    async def count(self, name: str) -> None:
        """Increment the counter `name` (a metric; kept for a day after its last change)."""
        if not self._usable():
            return
        try:
            async with self.client.pipeline() as pipe:
                await pipe.incr(self.key(name)).expire(self.key(name), COUNTER_TTL).execute()
        except RedisError as exc:
            self._failed(exc)

    async def get_or_compute(
        self, name: str, compute: Callable[[], Awaitable[bytes]], ttl: int
    ) -> tuple[bytes, bool]:
        """Return (value, True) from the cache, or (computed value, False).

        Of many requests that miss at once, one takes the lock and computes; the others
        poll the key until the value appears. If the lock holder dies, its lock expires
        after `lock_ms` and a waiter takes over. Without Redis, everyone computes.
        """
        lock, token = self.key(f"lock:{name}"), uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_ms / 1000
        pause = LOCK_POLL_SECONDS
        while True:
            cached = await self.get(name)
            if cached is not None:
                return cached, True
            if not self._usable() or time.monotonic() > deadline:
                return await compute(), False
            try:
                locked = await self.client.set(lock, token, nx=True, px=self.lock_ms)
            except RedisError as exc:
                self._failed(exc)
                return await compute(), False
            if locked:
                try:
                    # Another request may have stored it between our miss and our lock.
                    cached = await self.get(name)
                    if cached is not None:
                        return cached, True
                    value = await compute()
                    await self.set(name, value, ttl)
                    return value, False
                finally:
                    await self._unlock(lock, token)
            # Growing pauses: 50 waiters polling every 20 ms would keep the one event loop
            # busy with GETs while the request that holds the lock needs it to finish.
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, LOCK_POLL_MAX_SECONDS)

    async def _unlock(self, lock: str, token: str) -> None:
        try:
            # The stubs leave eval() untyped; it returns 1 or 0 and we need neither.
            await self.client.eval(UNLOCK_SCRIPT, 1, lock, token)  # type: ignore[no-untyped-call]
        except RedisError as exc:
            self._failed(exc)  # the lock expires by itself after lock_ms

    def _usable(self) -> bool:
        return self.enabled and time.monotonic() >= self._skip_until

    def _failed(self, exc: RedisError) -> None:
        if self._skip_until == 0.0:
            log.warning("cache unavailable (Redis: %s); serving from the database", exc)
        self._skip_until = time.monotonic() + self.retry_seconds

    def _recovered(self) -> None:
        if self._skip_until != 0.0:
            log.warning("cache available again (Redis answers)")
            self._skip_until = 0.0


def make_cache(
    url: str, prefix: str, *, enabled: bool, lock_ms: int, retry_seconds: float
) -> Cache:
    """Return a Cache on a Redis client with short timeouts (a slow cache is no cache)."""
    # Longer than lab 3's 0.5 s: on an event loop, a timeout also counts the time the loop
    # spends on other requests before it reads the answer, so a busy (not a dead) Redis
    # would look dead under load.
    client = redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )
    return Cache(
        client, prefix=prefix, enabled=enabled, lock_ms=lock_ms, retry_seconds=retry_seconds
    )
