"""Admission control before a request's body is read: rate limits, then load shedding.

- Uploads (`POST /crop`, `/grayscale`, `/resize`): the `RATE_LIMIT` rule per client, then the
  queue bounds (`MAX_QUEUED_JOBS`, `MAX_QUEUED_AGE_SECONDS`). A refused upload costs one Redis
  round trip (and a cached number): nothing is read, stored or written.
- Status and result (`GET /task-status/...`, `/result/...`): the `READ_RATE_LIMIT` rule, a
  budget of its own, so that a client polling hard cannot spend its uploads (and the other way
  round). Never shed: they finish work already accepted, and cost little.
- Health, metrics and docs: never limited (a probe refused would restart a healthy pod).

`429 rate_limited` and `503 overloaded` carry `Retry-After` and the one JSON error shape; an
accepted request limited by a rule gets `X-RateLimit-Limit` and `X-RateLimit-Remaining`.
It sits inside the HTTP metrics' middleware, so refusals show in `http_requests_total`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgproc.errors import error_body
from imgproc.metrics.api import ApiMetrics
from imgproc.overload.ratelimit import Decision, RateLimiter, Rule, client_key
from imgproc.overload.shedding import Bounds, LoadGauge

READ_PREFIXES = ("/task-status/", "/result/")


@dataclass(frozen=True)
class Admission:
    """What the middleware checks; a rule or the gauge left out is not checked."""

    limiter: RateLimiter
    upload_rule: Rule | None
    read_rule: Rule | None
    gauge: LoadGauge
    bounds: Bounds
    shed_retry_after: int
    upload_paths: frozenset[str]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, *, admission: Admission, metrics: ApiMetrics) -> None:
        self.app = app
        self.admission = admission
        self.metrics = metrics

    def _classify(self, scope: Scope) -> tuple[Rule | None, bool]:
        """(the rate-limit rule, whether load shedding applies) for this request."""
        path, method, adm = scope["path"], scope["method"], self.admission
        if method == "POST" and path in adm.upload_paths:
            return adm.upload_rule, adm.bounds.active
        if method in ("GET", "HEAD") and path.startswith(READ_PREFIXES):
            return adm.read_rule, False
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule, shed = self._classify(scope)
        decision: Decision | None = None
        if rule is not None:
            address = scope["client"][0] if scope.get("client") else None
            who = client_key(_header(scope, b"x-api-key"), address)
            decision = await self.admission.limiter.hit(rule, who)
            if decision is None:
                self.metrics.unchecked.labels(check="rate_limit").inc()
            elif not decision.allowed:
                self.metrics.rate_limited.labels(rule=rule.name).inc()
                await _refuse(
                    scope,
                    send,
                    429,
                    "rate_limited",
                    f"too many requests: the limit is {rule.describe()} per client; retry in "
                    f"{decision.retry_after_seconds} s",
                    retry_after=decision.retry_after_seconds,
                    details={
                        "limit": rule.limit,
                        "period_seconds": rule.period,
                        "retry_after_ms": decision.retry_after_ms,
                    },
                )
                return
        if shed and await self._shed(scope, send):
            return
        if decision is None or rule is None:
            await self.app(scope, receive, send)
            return
        extra = [
            (b"x-ratelimit-limit", str(rule.limit).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        ]

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)

    async def _shed(self, scope: Scope, send: Send) -> bool:
        """Refuse the upload (503) if the queue is past a bound; True if it was refused."""
        adm = self.admission
        load = await adm.gauge.read()
        if load is None:
            self.metrics.unchecked.labels(check="load").inc()
            return False
        reason = adm.bounds.exceeded(load)
        if reason is None:
            return False
        self.metrics.shed.labels(reason=reason.value).inc()
        await _refuse(
            scope,
            send,
            503,
            "overloaded",
            f"the service is overloaded ({load.queued} jobs queued, the oldest "
            f"{load.oldest_age_seconds:.0f} s old); retry in {adm.shed_retry_after} s",
            retry_after=adm.shed_retry_after,
            details={
                "reason": reason.value,
                "queued": load.queued,
                "oldest_queued_age_seconds": round(load.oldest_age_seconds, 1),
                "max_queued_jobs": adm.bounds.max_queued or None,
                "max_queued_age_seconds": adm.bounds.max_age_seconds or None,
            },
        )
        return True


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    retry_after: int,
    details: dict[str, object],
) -> None:
    request_id = scope.get("state", {}).get("request_id")
    body = json.dumps(error_body(code, message, details=details, request_id=request_id)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
