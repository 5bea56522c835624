"""Best-effort Redis clients: every error is logged and treated as a miss.

What is cached, under which keys and for how long is the jobs' business: `jobs/status_cache.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
import structlog

log = structlog.get_logger(__name__)

CacheObserver = Callable[[str, str], None]  # (cache name, "hit" | "miss" | "error")


def _noop(cache: str, result: str) -> None:
    return None


class _Breaker:
    """After an error the cache is skipped for `pause` seconds: a Redis that hangs (rather than
    refusing connections) would otherwise cost every request or job a timeout per cache call."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self._skip_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, op: str, exc: BaseException) -> None:
        self._skip_until = time.monotonic() + self.pause
        log.warning("cache_unavailable", op=op, error=str(exc) or type(exc).__name__)


class AsyncCache(_Breaker):
    """The API's cache client (redis.asyncio): short timeouts, and a breaker."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        observe: CacheObserver = _noop,
        pause: float = 5.0,
    ) -> None:
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self.observe = observe
        super().__init__(pause)

    async def get(self, cache: str, key: str) -> bytes | None:
        if not self._available():
            self.observe(cache, "error")
            return None
        try:
            value: bytes | None = await self.client.get(key)
        except (redis.RedisError, OSError) as exc:
            self.observe(cache, "error")
            self._failed("get", exc)
            return None
        self.observe(cache, "miss" if value is None else "hit")
        return value

    async def set(self, key: str, value: str, *, ttl: int, only_if_missing: bool = False) -> None:
        if not self._available():
            return
        try:
            await self.client.set(key, value, ex=ttl, nx=only_if_missing)
        except (redis.RedisError, OSError) as exc:
            self._failed("set", exc)

    async def set_many(self, *entries: tuple[str, str, int, bool]) -> None:
        """`set` for several `(key, value, ttl, only_if_missing)` in one round trip."""
        if not self._available():
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value, ttl, only_if_missing in entries:
                    pipe.set(key, value, ex=ttl, nx=only_if_missing)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("set", exc)

    async def delete(self, key: str) -> None:
        if not self._available():
            return
        try:
            await self.client.delete(key)
        except (redis.RedisError, OSError) as exc:
            self._failed("delete", exc)

    async def close(self) -> None:
        await self.client.aclose()  # type: ignore[attr-defined]  # stubs predate aclose


class SyncCache(_Breaker):
    """The worker's cache client: write-through of status changes, without waiting for Redis.

    A worker writes a status on every transition of every job, and waiting for each reply would
    add a round trip to the job's path. So `send` writes the commands to the socket
    and returns; their replies are read by `settle`, which the next `send` calls first (they have
    long arrived by then). One connection, so Redis applies the writes in the order they were
    sent. Errors trip the breaker and drop the connection: the cache is an optimisation,
    PostgreSQL the truth.
    """

    def __init__(self, url: str, *, timeout: float, pause: float = 5.0) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        super().__init__(pause)
        self._conn: redis.connection.AbstractConnection | None = None
        self._unread = 0  # replies sent for and not read yet

    def send(self, *commands: tuple[str | int, ...]) -> None:
        """Send Redis commands, e.g. `("SET", key, value, "EX", 60)`, without waiting."""
        self.settle()
        if not self._available():
            return
        try:
            conn = self._conn
            if conn is not None and self._closed_by_server(conn):
                self._drop_quietly()
                conn = None
            if conn is None:
                conn = self._conn = self.client.connection_pool.get_connection()
            # (redis-py's stubs say str; the packed bytes are what it really sends)
            conn.send_packed_command(conn.pack_commands(commands))  # type: ignore[arg-type]
            self._unread += len(commands)
        except (redis.RedisError, OSError) as exc:
            self._failed("send", exc)

    def settle(self) -> None:
        """Read the replies to everything sent so far."""
        while self._unread:
            assert self._conn is not None
            self._unread -= 1
            try:
                self._conn.read_response()
            except redis.ResponseError as exc:  # one command failed; the connection is fine
                log.warning("cache_command_failed", error=str(exc))
            except (redis.RedisError, OSError) as exc:
                self._failed("reply", exc)

    @staticmethod
    def _closed_by_server(conn: redis.connection.AbstractConnection) -> bool:
        # Nothing is due from Redis now, so a readable socket means the server closed it (a
        # restart, an idle timeout, CLIENT KILL): a write into it would vanish without an error.
        try:
            return bool(conn.can_read(timeout=0))
        except (redis.ConnectionError, OSError):
            return True

    def _failed(self, op: str, exc: BaseException) -> None:
        super()._failed(op, exc)
        self._drop_quietly()

    def _drop_quietly(self) -> None:
        # A broken (or out of step) connection is closed; the next send opens a new one.
        if self._conn is not None:
            self._conn.disconnect()
            self.client.connection_pool.release(self._conn)
        self._conn, self._unread = None, 0

    def close(self) -> None:
        self.settle()
        if self._conn is not None:
            self.client.connection_pool.release(self._conn)
            self._conn = None
        self.client.close()
