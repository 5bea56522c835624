"""A deliberately degraded build of the service, to prove that an SLO check catches it.

Three settings turn it on (all off by default, and then nothing is installed at all):

    LATENCY_MS=300      every request except /healthz waits 300 ms more before it is handled
    FAILURE_RATE=0.2    a random 20 % of those requests fail instead: an item's page answers 404
                        (as if the item had just been deleted), every other request 500
    CAPACITY_RPS=100    the service starts at most 100 requests a second on average (a burst
                        of up to a second's worth starts at once); past that rate requests
                        wait in a queue, as on a server at its capacity

Lab 7's grader starts the service with them to check that your SLO check fails a slow or
failing build, and runs your step load against a build with a known capacity, so that its
knee is at the same step on any machine. Try it: `make serve LAB=7 LATENCY_MS=300`, then run
your load test.
"""

import asyncio
import random
import re

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# Never slowed: the harness polls it to know when the server is up.
EXEMPT = frozenset({"/healthz"})
# With CAPACITY_RPS: how much work (in seconds at that rate) may start at once.
BURST = 1.0
# With FAILURE_RATE: an item's page fails as a deleted item would (a 4xx is an error too).
ITEM_PAGE = re.compile(r"/items/\d+")


class DegradeMiddleware:
    """Add `latency_ms` to every request and fail a share `failure_rate` of them (404 or 500);
    with `capacity_rps`, start at most that many requests a second (the others queue)."""

    def __init__(
        self, app: ASGIApp, *, latency_ms: int, failure_rate: float, capacity_rps: float = 0
    ) -> None:
        self.app = app
        self.delay = latency_ms / 1000
        self.failure_rate = failure_rate
        self.interval = 1 / capacity_rps if capacity_rps else 0.0
        # When the queue would be empty again if requests started exactly one per `interval`
        # (event loop clock): the "theoretical arrival time" of the GCRA, the algorithm of a
        # token bucket without the tokens.
        self.busy_until = 0.0

    async def _wait_for_a_slot(self) -> None:
        # Below capacity a request starts at once, and so does a burst of up to BURST seconds
        # of work (40 users that start together); above capacity the wait grows with the
        # backlog, as on a saturated server, whatever the speed of the machine.
        now = asyncio.get_running_loop().time()
        busy_until = max(self.busy_until, now)
        self.busy_until = busy_until + self.interval
        start = busy_until - BURST
        if start > now:
            await asyncio.sleep(start - now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.interval:
            await self._wait_for_a_slot()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure_rate and random.random() < self.failure_rate:
            status = 404 if ITEM_PAGE.fullmatch(scope["path"]) else 500
            answer = JSONResponse(
                status_code=status, content={"detail": "Injected failure (FAILURE_RATE)"}
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install_degradation(
    app: FastAPI, *, latency_ms: int, failure_rate: float, capacity_rps: float = 0
) -> None:
    """Slow down, break or cap `app` on purpose; do nothing when every setting is 0."""
    if latency_ms or failure_rate or capacity_rps:
        app.add_middleware(
            DegradeMiddleware,
            latency_ms=latency_ms,
            failure_rate=failure_rate,
            capacity_rps=capacity_rps,
        )
