"""Load shedding: refuse new jobs while the queue is longer (or older) than a bound.

An unbounded queue turns overload into latency for everyone: each new job waits behind all the
others, clients time out and retry, and the backlog grows. Past a bound it is kinder to say
"not now" at once (`503` + `Retry-After`) and keep the accepted jobs' wait short.

The queue is read from the job table, the truth (the broker's list can lose messages that the
reconciler re-sends later): the queued rows through the reconciler's partial index. One API
process reads it at most once per `interval` and shares the answer; the request that finds the
value stale refreshes it while the others use the old one, so a burst makes one query, not one
per request. If the read fails the API lets submissions through (fail open): the database
being down is answered by the submission itself, and a broken check must not refuse work.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from imgproc.jobs import repository as repo

log = structlog.get_logger(__name__)
_QUERY_TIMEOUT = 1.0


class ShedReason(StrEnum):
    QUEUE_DEPTH = "queue_depth"
    QUEUE_AGE = "queue_age"


@dataclass(frozen=True)
class QueueLoad:
    queued: int
    oldest_age_seconds: float


@dataclass(frozen=True)
class Bounds:
    max_queued: int  # 0: no bound
    max_age_seconds: float  # 0: no bound

    @property
    def active(self) -> bool:
        return self.max_queued > 0 or self.max_age_seconds > 0

    def exceeded(self, load: QueueLoad) -> ShedReason | None:
        if self.max_queued and load.queued >= self.max_queued:
            return ShedReason.QUEUE_DEPTH
        if self.max_age_seconds and load.oldest_age_seconds > self.max_age_seconds:
            return ShedReason.QUEUE_AGE
        return None


class LoadGauge:
    """The job table's queue, read at most once per `interval` seconds by this process."""

    def __init__(self, engine: AsyncEngine, *, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self._value: QueueLoad | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def read(self) -> QueueLoad | None:
        """The latest load, or None when it could not be read (then: let the request in)."""
        if time.monotonic() - self._read_at < self.interval or self._lock.locked():
            return self._value
        async with self._lock:
            try:
                self._value = await asyncio.wait_for(self._query(), _QUERY_TIMEOUT)
            except Exception as exc:  # fail open: never refuse work because the check broke
                log.warning("load_check_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                self._value = None
            self._read_at = time.monotonic()  # a failure is not retried before the interval
        return self._value

    async def _query(self) -> QueueLoad:
        async with self.engine.connect() as conn:
            queued, age = (await conn.execute(repo.queue_load())).one()
        return QueueLoad(int(queued), float(age))
