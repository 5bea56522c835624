"""A small Redis cache that never takes the API down with it.

Every key starts with REDIS_PREFIX and gets a TTL. When Redis does not answer, the cache
behaves like an empty cache (reads miss, writes are skipped), logs one warning, and leaves
Redis alone for `cache_retry_seconds` so that requests do not each wait for a timeout; the
API keeps answering from PostgreSQL.

`get_or_compute` adds the stampede guard: when a hot key expires, one request computes it
under a Redis lock (SET NX PX) and the others wait for its result instead of all running the
expensive query at once.

TODO(lab 4): this is still lab 3's synchronous client, and its methods are stubs. Port it:
- `make_cache`: an asyncio client, `redis.asyncio.Redis.from_url(...)`, with timeouts of
  about 2 s (on an event loop a timeout also counts the time the loop spends on other
  requests, so lab 3's 0.5 s makes a busy Redis look dead under load);
  the type of `Cache.client` becomes `redis.asyncio.Redis[bytes]`; `close()` awaits
  `self.client.aclose()`;
- every method below: lab 3's code (in the comments) with `await` before each Redis call;
  a pipeline is `async with self.client.pipeline() as pipe: await pipe....execute()`;
  `compute` is now an async function: `await compute()`;
- the waiters of the stampede lock sleep with `await asyncio.sleep(...)`: `time.sleep`
  would stop the whole event loop, not just the waiting request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import redis
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
LOCK_POLL_SECONDS = 0.02
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
        self.client.close()  # TODO(lab 4): `await self.client.aclose()` on the asyncio client

    def key(self, name: str) -> str:
        """Return the full Redis key of `name` (with the prefix)."""
        return f"{self.prefix}{name}"

    async def get(self, name: str) -> bytes | None:
        """Return the cached value, or None on a miss (or when Redis is unavailable)."""
        # Lab 3:
        #     if not self._usable():
        #         return None
        #     try:
        #         value = self.client.get(self.key(name))
        #     except RedisError as exc:
        #         self._failed(exc)
        #         return None
        #     self._recovered()
        #     return value if isinstance(value, bytes) else None
        raise NotImplementedError("TODO(lab 4): Cache.get on redis.asyncio (await the GET)")

    async def set(self, name: str, value: bytes, ttl: int) -> None:
        """Store `value` for `ttl` seconds (nothing happens when Redis is unavailable)."""
        # Lab 3:
        #     if not self._usable():
        #         return
        #     try:
        #         self.client.set(self.key(name), value, ex=ttl)
        #     except RedisError as exc:
        #         self._failed(exc)
        raise NotImplementedError("TODO(lab 4): Cache.set on redis.asyncio (await the SET)")

    async def invalidate(self, *names: str) -> None:
        """Delete the keys, so that the next read goes to the database."""
        # Lab 3:
        #     if not self._usable() or not names:
        #         return
        #     try:
        #         self.client.delete(*(self.key(n) for n in names))
        #     except RedisError as exc:
        #         # The database changed but the old value may stay until its TTL ends.
        #         log.error("cache invalidation of %s failed; stale until TTL: %s", names, exc)
        #         self._failed(exc)
        raise NotImplementedError("TODO(lab 4): Cache.invalidate on redis.asyncio (await DEL)")

    async def count(self, name: str) -> None:
        """Increment the counter `name` (a metric; kept for a day after its last change)."""
        # Lab 3:
        #     if not self._usable():
        #         return
        #     try:
        #         with self.client.pipeline() as pipe:
        #             pipe.incr(self.key(name)).expire(self.key(name), COUNTER_TTL).execute()
        #     except RedisError as exc:
        #         self._failed(exc)
        raise NotImplementedError("TODO(lab 4): Cache.count on redis.asyncio (async pipeline)")

    async def get_or_compute(
        self, name: str, compute: Callable[[], Awaitable[bytes]], ttl: int
    ) -> tuple[bytes, bool]:
        """Return (value, True) from the cache, or (computed value, False).

        Of many requests that miss at once, one takes the lock and computes; the others
        poll the key until the value appears. If the lock holder dies, its lock expires
        after `lock_ms` and a waiter takes over. Without Redis, everyone computes.
        """
        # Lab 3 (`compute` was a plain function; now it is async: `await compute()`):
        #     lock, token = self.key(f"lock:{name}"), uuid.uuid4().hex
        #     deadline = time.monotonic() + self.lock_ms / 1000
        #     while True:
        #         cached = self.get(name)
        #         if cached is not None:
        #             return cached, True
        #         if not self._usable() or time.monotonic() > deadline:
        #             return compute(), False
        #         try:
        #             locked = self.client.set(lock, token, nx=True, px=self.lock_ms)
        #         except RedisError as exc:
        #             self._failed(exc)
        #             return compute(), False
        #         if locked:
        #             try:
        #                 # Another request may have stored it between our miss and our lock.
        #                 cached = self.get(name)
        #                 if cached is not None:
        #                     return cached, True
        #                 value = compute()
        #                 self.set(name, value, ttl)
        #                 return value, False
        #             finally:
        #                 self._unlock(lock, token)
        #         time.sleep(LOCK_POLL_SECONDS)
        #
        # def _unlock(self, lock: str, token: str) -> None:
        #     try:
        #         self.client.eval(UNLOCK_SCRIPT, 1, lock, token)
        #     except RedisError as exc:
        #         self._failed(exc)  # the lock expires by itself after lock_ms
        raise NotImplementedError("TODO(lab 4): the stampede guard on redis.asyncio")

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
    # TODO(lab 4): a blocking client: each call stops the event loop until Redis answers.
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    return Cache(
        client, prefix=prefix, enabled=enabled, lock_ms=lock_ms, retry_seconds=retry_seconds
    )
