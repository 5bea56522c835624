"""The two places where the capstone uses library internals, checked against the pinned versions.

`pyproject.toml` pins redis-py and kombu exactly. These tests fail, naming what changed, when an
upgrade moves what we rely on, instead of letting the worker break (or silently slow down) later:

- `cache.service.SyncCache` sends status writes on a connection it holds itself
  (`ConnectionPool.get_connection`, `pack_commands`, `send_packed_command`, `read_response`,
  `can_read`) so a job never waits for Redis's reply;
- `broker.Channel` overrides kombu's private `Channel._create_client` so its per-message
  bookkeeping reuses one Redis client instead of building one per step;
- `jobs.queue.JobQueue.send` writes the broker message itself (Celery builds it, the envelope
  is kombu's Redis transport's), so the API publishes with one LPUSH from its event loop.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import uuid
from importlib.metadata import version
from typing import Any

import kombu.transport.redis as kombu_redis
import pytest
import redis
from redis.connection import AbstractConnection, ConnectionPool

from imgproc.broker import Channel, Transport
from imgproc.cache.service import SyncCache
from imgproc.config import Settings
from imgproc.jobs.queue import JobQueue
from imgproc.jobs.status_cache import StatusKeys


def _pinned(package: str) -> str:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.split("[")[0].split("=")[0] == package]
    return str(spec.split("==")[1])


@pytest.mark.parametrize("package", ["redis", "kombu"])
def test_the_versions_we_rely_on_are_pinned_and_installed(package: str) -> None:
    assert version(package) == _pinned(package), (
        f"{package} {version(package)} is installed but pyproject pins {_pinned(package)}: "
        "re-run these tests on the new version and re-measure before changing the pin"
    )


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_redis_connection_methods_synccache_uses_are_there() -> None:
    assert _params(ConnectionPool.get_connection)[0] == "self"
    assert _params(AbstractConnection.pack_commands) == ["self", "commands"]
    assert _params(AbstractConnection.send_packed_command)[:2] == ["self", "command"]
    assert _params(AbstractConnection.read_response)[0] == "self"
    assert _params(AbstractConnection.can_read) == ["self", "timeout"]
    assert ConnectionPool.release.__qualname__ == "ConnectionPool.release"


def test_synccache_round_trip_on_the_pinned_redis(settings: Settings) -> None:
    cache = SyncCache(settings.redis_url, timeout=1)
    key = StatusKeys(f"{settings.redis_prefix}internals:").status("x")
    reader = redis.Redis.from_url(settings.redis_url)
    try:
        cache.send(("SET", key, "1", "EX", 60), ("INCR", key))
        cache.settle()
        assert reader.get(key) == b"2", "commands sent without waiting must land, in order"
    finally:
        reader.delete(key)
        reader.close()
        cache.close()


def test_kombu_still_builds_its_clients_through_create_client() -> None:
    private = getattr(kombu_redis.Channel, "_create_client")  # noqa: B009 (private on purpose)
    assert _params(private) == ["self", "asynchronous"], (
        "kombu changed Channel._create_client; imgproc/broker.py overrides it"
    )
    source = inspect.getsource(kombu_redis.Channel.conn_or_acquire)
    assert "self._create_client()" in source, (
        "kombu's bookkeeping no longer asks _create_client for its client; the override in"
        " imgproc/broker.py would save nothing"
    )
    assert issubclass(Transport.Channel, kombu_redis.Channel) and Transport.Channel is Channel


def test_our_channel_reuses_one_client_for_its_bookkeeping(settings: Settings) -> None:
    from kombu import Connection

    from imgproc.broker import TRANSPORT

    with Connection(settings.redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second, "the bookkeeping client must be built once, not per message"
            assert first.ping()


def _without_ids(raw: bytes) -> dict[str, Any]:
    """A broker message with what differs per message (task id, delivery tag) taken out."""
    message: dict[str, Any] = json.loads(raw)
    task_id = message["headers"].pop("id")
    assert message["headers"].pop("root_id") == task_id
    assert message["properties"].pop("correlation_id") == task_id
    uuid.UUID(message["properties"].pop("delivery_tag"))
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_the_api_sends_exactly_what_kombu_would_publish(settings: Settings) -> None:
    s = settings.model_copy(update={"celery_queue": f"internals-{uuid.uuid4().hex[:8]}"})
    queue = JobQueue.from_settings(s)
    key = f"{s.redis_prefix}{s.celery_queue}"
    reader = redis.Redis.from_url(s.redis_url)
    # A job id like the API's, a second one (built from the first one's template), and one the
    # template does not take (it goes through Celery every time).
    job_ids = [str(uuid.uuid4()), str(uuid.uuid4()), "job/1"]

    async def send() -> None:
        try:
            for job_id in job_ids:
                await queue.send(job_id)
        finally:
            await queue.aclose()

    try:
        for job_id in job_ids:
            queue.publish(job_id)  # Celery + kombu, the reference
        asyncio.run(send())
        assert reader.llen(key) == 2 * len(job_ids), "send() must push onto the queue's own list"
        raw = [reader.rpop(key) for _ in range(2 * len(job_ids))]  # oldest first
        kombus, ours = raw[: len(job_ids)], raw[len(job_ids) :]
        for job_id, theirs, mine in zip(job_ids, kombus, ours, strict=True):
            assert theirs is not None and mine is not None
            assert _without_ids(mine) == _without_ids(theirs), (
                f"the message JobQueue.send builds for {job_id!r} differs from kombu's:"
                " revisit imgproc/jobs/queue.py"
            )
        ids = [json.loads(m)["headers"]["id"] for m in ours if m is not None]
        tags = [json.loads(m)["properties"]["delivery_tag"] for m in ours if m is not None]
        assert len(set(ids)) == len(set(tags)) == len(job_ids), "every message has its own ids"
    finally:
        for stale in reader.scan_iter(match=f"{s.redis_prefix}*{s.celery_queue}*"):
            reader.delete(stale)
        reader.close()
        queue.close()
