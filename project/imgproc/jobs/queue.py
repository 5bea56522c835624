"""Send a job to the workers: the one way the API and the worker publish a job id.

The message carries only the job id (the image stays in storage, the state in PostgreSQL).

`publish` goes through Celery and kombu and blocks on the broker (the worker's reconciler uses
it; async code would need a thread). The API sends with `send`, from the event loop: Celery
still builds the message (`send_task` with a producer that keeps what it is given instead of
publishing it), and one asynchronous `LPUSH` delivers it, the way kombu's Redis transport
would. That saves a thread hop and kombu's publishing machinery per upload (project/README.md,
"How the submit path's cost was cut"). Celery builds the message once per queue; later ones are
that message with the job id, the task id and the delivery tag replaced (`_Template`): the
routing and header building of `send_task` cost more than the LPUSH. The envelope is kombu's
(pinned exactly, like Celery); project/tests/test_library_internals.py checks it equals what
kombu writes, message after message.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

import anyio
import redis.asyncio as aioredis
from celery import Celery
from kombu import serialization
from kombu.entity import maybe_delivery_mode
from kombu.utils.json import dumps

from imgproc.celery_app import PROCESS_TASK, create_celery
from imgproc.config import Settings


class _Kept:
    """Stands in for kombu's Producer inside `Celery.send_task`: keeps what it would publish.

    `publish` has the signature of `kombu.Producer.publish`, so Celery's arguments bind the
    same way; `connection` (never connected) only translates errors, as send_task expects.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.kept: list[bytes] = []

    def publish(
        self,
        body: Any,
        routing_key: str | None = None,
        delivery_mode: Any = None,
        mandatory: bool = False,
        immediate: bool = False,
        priority: int = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
        headers: dict[str, Any] | None = None,
        compression: str | None = None,
        exchange: Any = None,
        retry: bool = False,
        retry_policy: Any = None,
        declare: Any = None,
        expiration: float | None = None,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **properties: Any,
    ) -> None:
        # What kombu's Producer.publish, virtual Channel.prepare_message and basic_publish, and
        # the Redis channel's _put do with an anonymous-exchange message, minus the I/O.
        if compression or priority or expiration is not None or content_type or exchange:
            raise ValueError("only plain JSON messages to the default exchange are sent here")
        content_type, content_encoding, data = serialization.dumps(body, serializer=serializer)
        properties["delivery_mode"] = maybe_delivery_mode(delivery_mode)
        properties["delivery_info"] = {"exchange": "", "routing_key": routing_key}
        properties["priority"] = 0
        properties["body_encoding"] = "base64"
        properties["delivery_tag"] = str(uuid.uuid4())
        raw = data.encode() if isinstance(data, str) else data
        message = {
            "body": base64.b64encode(raw).decode(),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers or {},
            "properties": properties,
        }
        self.kept.append(dumps(message).encode())


# Job ids the template may carry: no character that JSON or repr() would escape.
_PLAIN_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


class _Template:
    """One message built by Celery, made into the next with three substitutions.

    What differs between two jobs' messages: the job id (in the body and in `argsrepr`), the
    task id Celery generates (`id`, `root_id`, `correlation_id`) and the delivery tag. The
    template is built with a job id of its own, and the random ids it got are the markers.
    """

    JOB = "00000000-0000-4000-8000-00000000f00d"

    def __init__(self, built: bytes) -> None:
        message = json.loads(built)
        self.task_id = message["headers"]["id"]
        self.tag = message["properties"]["delivery_tag"]
        self.body = base64.b64decode(message["body"]).decode()
        message["body"] = "\u0000body"  # a marker no generated value contains
        self.envelope = dumps(message)
        if self.envelope.count(self.task_id) != 3 or self.JOB not in self.body:
            raise ValueError("Celery's message has changed shape: revisit jobs/queue.py")

    def message(self, job_id: str) -> bytes:
        body = base64.b64encode(self.body.replace(self.JOB, job_id).encode()).decode()
        return (
            self.envelope.replace(self.task_id, str(uuid.uuid4()))
            .replace(self.tag, str(uuid.uuid4()))
            .replace(self.JOB, job_id)
            .replace("\\u0000body", body)
            .encode()
        )


class JobQueue:
    def __init__(
        self,
        celery: Celery,
        queue: str,
        *,
        broker: aioredis.Redis[bytes] | None = None,
        key_prefix: str = "",
    ) -> None:
        self.celery = celery
        self.queue = queue
        # `send` without a broker client (or with Celery events on, which kombu must publish
        # too) falls back to `publish` in a thread.
        self._broker = None if celery.conf.task_send_sent_event else broker
        self._key = f"{key_prefix}{queue}"
        self._connection: Any = None  # a kombu Connection for `message`; it never connects
        self._template: _Template | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> JobQueue:
        broker: aioredis.Redis[bytes] = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(
            create_celery(settings),
            settings.celery_queue,
            broker=broker,
            key_prefix=settings.redis_prefix,
        )

    def publish(self, job_id: str) -> None:
        self.celery.send_task(PROCESS_TASK, args=[job_id], queue=self.queue)

    def message(self, job_id: str) -> bytes:
        """The broker's bytes for job `job_id`, exactly as `publish` would write them."""
        if not _PLAIN_ID.fullmatch(job_id):
            return self._built(job_id)
        if self._template is None:
            self._template = _Template(self._built(_Template.JOB))
        return self._template.message(job_id)

    def _built(self, job_id: str) -> bytes:
        """The message as Celery's `send_task` builds it."""
        if self._connection is None:
            self._connection = self.celery.connection_for_write()
        kept = _Kept(self._connection)
        # (Celery's stubs ask for a kombu Producer; send_task only calls what _Kept has.)
        self.celery.send_task(
            PROCESS_TASK,
            args=[job_id],
            queue=self.queue,
            producer=kept,  # type: ignore[arg-type]
        )
        (message,) = kept.kept
        return message

    async def send(self, job_id: str) -> None:
        """`publish` from the event loop: one LPUSH onto the queue's list."""
        if self._broker is None:
            await anyio.to_thread.run_sync(self.publish, job_id)
            return
        await self._broker.lpush(self._key, self.message(job_id))

    def check(self, timeout: float) -> None:
        """Raise if the broker does not answer within `timeout` seconds."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=int(timeout))

    async def aclose(self) -> None:
        if self._broker is not None:
            await self._broker.aclose()  # type: ignore[attr-defined]  # stubs predate aclose

    def close(self) -> None:
        self.celery.close()
