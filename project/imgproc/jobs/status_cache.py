"""The status cache's policy: which keys hold what, for how long, and who may overwrite them.

Keys (under REDIS_PREFIX):
- `imgproc:dedup:<request key>` -> job id of the live job for that image + operation + params.
- `imgproc:status:<job id>` -> the status document `GET /task-status` answers.

Whoever changes a job writes its status through (the API when it creates it, the worker on
every transition, with a plain SET that overwrites). A reader that missed and loaded the row
from PostgreSQL fills the cache with SET NX, so a stale read never overwrites the fresher value
a worker wrote meanwhile. Final states live longer: they never change again. A failed job's
dedup entry is deleted, so an identical request starts a fresh job.

The clients underneath (`cache.service`) are best-effort: an error is a miss, never a failure.
"""

from __future__ import annotations

import uuid

from imgproc.cache.service import AsyncCache
from imgproc.config import Settings
from imgproc.jobs.models import FINAL_STATUSES, JobStatus
from imgproc.jobs.schemas import TaskStatus

RedisCommand = tuple[str | int, ...]


class StatusKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}imgproc:"

    def dedup(self, request_key: str) -> str:
        return f"{self.prefix}dedup:{request_key}"

    def status(self, job_id: uuid.UUID | str) -> str:
        return f"{self.prefix}status:{job_id}"


def ttl_for(settings: Settings, status: JobStatus) -> int:
    """How long a status document stays cached."""
    return settings.final_ttl_seconds if status in FINAL_STATUSES else settings.status_ttl_seconds


def transition_commands(
    settings: Settings, keys: StatusKeys, status: TaskStatus, request_key: str
) -> list[RedisCommand]:
    """What a worker sends to Redis when a job changes state (overwrites; see module doc)."""
    commands: list[RedisCommand] = [
        (
            "SET",
            keys.status(status.task_id),
            status.model_dump_json(),
            "EX",
            ttl_for(settings, status.status),
        )
    ]
    if status.status == JobStatus.FAILED:
        commands.append(("DEL", keys.dedup(request_key)))
    return commands


class StatusCache:
    """The API's view of the status cache (async, best-effort)."""

    def __init__(self, client: AsyncCache, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = StatusKeys(settings.redis_prefix)

    async def job_for_request(self, request_key: str) -> uuid.UUID | None:
        """The live job that an identical earlier request created, if the cache knows it."""
        raw = await self.client.get("dedup", self.keys.dedup(request_key))
        return None if raw is None else uuid.UUID(raw.decode())

    async def status(self, job_id: uuid.UUID) -> TaskStatus | None:
        raw = await self.client.get("status", self.keys.status(job_id))
        return None if raw is None else TaskStatus.model_validate_json(raw)

    async def remember_new(self, request_key: str, status: TaskStatus) -> None:
        """A job was created (or found as a twin): map its request to it, cache its status.

        One round trip for both (the status as `fill` writes it: only if missing).
        """
        await self.client.set_many(
            (
                self.keys.dedup(request_key),
                str(status.task_id),
                self.settings.final_ttl_seconds,
                False,
            ),
            (
                self.keys.status(status.task_id),
                status.model_dump_json(),
                ttl_for(self.settings, status.status),
                True,
            ),
        )

    async def fill(self, status: TaskStatus) -> None:
        """Cache a status read from PostgreSQL, unless a worker wrote a newer one meanwhile."""
        await self.client.set(
            self.keys.status(status.task_id),
            status.model_dump_json(),
            ttl=ttl_for(self.settings, status.status),
            only_if_missing=True,
        )

    async def overwrite(self, status: TaskStatus) -> None:
        """Cache a status this process just changed in PostgreSQL."""
        await self.client.set(
            self.keys.status(status.task_id),
            status.model_dump_json(),
            ttl=ttl_for(self.settings, status.status),
        )

    async def ping(self) -> None:
        await self.client.client.ping()

    async def close(self) -> None:
        await self.client.close()
