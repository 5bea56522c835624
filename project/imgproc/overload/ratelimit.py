"""Per-client rate limits kept in Redis, so every API replica counts against the same budget.

The algorithm is GCRA (the generic cell rate algorithm, as in redis-cell or Stripe's limiter):
one key per client holds the "theoretical arrival time" of its next request. A rule of N per
period lets a client send N requests at once, then one every period/N: no window edge where
2N slip through (a fixed window's flaw), one key and one round trip per request, and the exact
time until the next request is allowed, which becomes `Retry-After`.

The clock is Redis's (`TIME` inside the script), so API replicas with skewed clocks agree.
Redis down or slow: the request is let through (fail open) and Redis is skipped for a few
seconds, like the cache (cache/service.py): a limiter must never be why the API is down.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
import structlog
from limits import parse

log = structlog.get_logger(__name__)

# KEYS[1] the client's key; ARGV[1] ms between requests (period / N); ARGV[2] the period in ms.
# Returns {allowed (1/0), ms until the next request is allowed, requests left now}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, math.ceil(allow_at - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, 0, math.floor((now - allow_at) / interval)}
"""


@dataclass(frozen=True)
class Rule:
    """N requests per `period` seconds, for one group of routes (`name`: the metric label)."""

    name: str
    limit: int
    period: float

    @classmethod
    def parse(cls, name: str, text: str) -> Rule | None:
        """`"60/minute"`, `"5 per 10 seconds"` (the `limits` notation); None for ""."""
        if not text:
            return None
        item = parse(text)
        return cls(name, int(item.amount), float(item.get_expiry()))

    def describe(self) -> str:
        return f"{self.limit} per {self.period:g} s"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_ms: int  # 0 when allowed
    remaining: int

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds for the `Retry-After` header (HTTP has no fractions), at least 1."""
        return max(1, math.ceil(self.retry_after_ms / 1000))


def client_key(api_key: str | None, address: str | None) -> str:
    """Who a request counts against: its API key if it sent one, else its address."""
    return f"key:{api_key}" if api_key else f"addr:{address or 'unknown'}"


class RateLimiter:
    """Count requests per client and rule in Redis; `None` from `hit` means "not checked"."""

    def __init__(self, client: aioredis.Redis[bytes], *, prefix: str, pause: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.pause = pause
        self._script = client.register_script(_GCRA)
        self._skip_until = 0.0

    def key(self, rule: Rule, client: str) -> str:
        # Hashed: an API key is a secret and may be long; neither belongs in a Redis key name.
        digest = hashlib.sha256(client.encode()).hexdigest()[:32]
        return f"{self.prefix}ratelimit:{rule.name}:{digest}"

    async def hit(self, rule: Rule, client: str) -> Decision | None:
        """Count one request; the decision, or None when Redis could not be asked."""
        if time.monotonic() < self._skip_until:
            return None
        interval_ms = rule.period * 1000 / rule.limit
        try:
            allowed, retry_ms, remaining = await self._script(
                keys=[self.key(rule, client)], args=[f"{interval_ms:.3f}", rule.period * 1000]
            )
        except (redis.RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + self.pause
            log.warning("rate_limit_unavailable", error=str(exc) or type(exc).__name__)
            return None
        return Decision(bool(allowed), int(retry_ms), int(remaining))
