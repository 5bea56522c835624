"""A deliberately degraded build of the service, to prove that an SLO check catches it.

Two settings turn it on (both off by default, and then nothing is installed at all):

    LATENCY_MS=300      every request except /healthz waits 300 ms more before it is handled
    FAILURE_RATE=0.2    a random 20 % of those requests answer 500 instead

Lab 7's grader starts the service with them to check that your SLO check fails a slow or
failing build. Try it: `make serve LAB=7 LATENCY_MS=300`, then run your load test.
"""

import asyncio
import random

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# Never slowed: the harness polls it to know when the server is up.
EXEMPT = frozenset({"/healthz"})


class DegradeMiddleware:
    """Add `latency_ms` to every request and fail a share `failure_rate` of them with 500."""

    def __init__(self, app: ASGIApp, *, latency_ms: int, failure_rate: float) -> None:
        self.app = app
        self.delay = latency_ms / 1000
        self.failure_rate = failure_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure_rate and random.random() < self.failure_rate:
            answer = JSONResponse(
                status_code=500, content={"detail": "Injected failure (FAILURE_RATE)"}
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_degradation(app: FastAPI, *, latency_ms: int, failure_rate: float) -> None:
    """Slow down or break `app` on purpose; do nothing when both settings are 0."""
    if latency_ms or failure_rate:
        app.add_middleware(DegradeMiddleware, latency_ms=latency_ms, failure_rate=failure_rate)
