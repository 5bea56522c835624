"""The pricing service's HTTP API.

    GET  /price/{item_id}?base_price=9.5     {"item_id", "base_price", "discount", "price"}
    GET  /stock/{item_id}                    {"item_id", "available"}
         both take ?latency_ms=N&fail_rate=0.3 to override the global defaults by hand
    GET  /healthz                            {"status": "ok"}

    PUT  /control/items/{item_id}            set the item's Scenario, counters back to zero:
         {"fail_times": 2, "fail_status": 503,   the first 2 requests per endpoint fail
          "latency_ms": 300, "slow_times": 1,    delay (only the first request per endpoint)
          "trickle_ms": 300,                     the body one byte per 300 ms (slow_times too)
          "hold": true,                          wait until released (or a client hangs up)
          "only": "price"}                       all of it for /price only (default: both)
    GET  /control/items/{item_id}            the item's counters (ItemView)
    POST /control/items/{item_id}/release    let held requests of the item go on
    GET  /control/stats                      totals over all items
    DELETE /control/items                    forget every scenario and counter

The prices are a pure function of the item id, so a client (or a test) can check that an
answer really came from here: the discount is 0, 5, 10 or 15 % by `item_id % 4`.
"""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from app.config import Settings, get_settings
from app.state import Endpoint, ItemState, ItemView, Registry, Scenario, TotalsView

LatencyQuery = Annotated[int | None, Query(ge=0, le=60_000, description="delay in ms")]
FailRateQuery = Annotated[float | None, Query(ge=0, le=1, description="share of 503 answers")]


class PriceQuote(BaseModel):
    item_id: int
    base_price: float
    discount: float
    price: float


class Stock(BaseModel):
    item_id: int
    available: int


class Health(BaseModel):
    status: str = "ok"


def discount_of(item_id: int) -> float:
    return round((item_id % 4) * 0.05, 2)


def available_of(item_id: int) -> int:
    return (item_id * 7) % 23


async def behave(
    request: Request,
    item_id: int,
    endpoint: Endpoint,
    latency_ms: int | None,
    fail_rate: float | None,
) -> tuple[int, asyncio.Event] | None:
    """Count the attempt, then wait, hold or fail as the item's scenario says.

    Returns how to trickle the answer (ms per byte, the event that ends it), if it should be.
    """
    settings: Settings = request.app.state.settings
    registry: Registry = request.app.state.registry
    state = registry.get(item_id)
    scenario = state.scenario if state.scenario.only in (None, endpoint) else Scenario()
    counters = state.endpoints[endpoint]
    number = counters.arrive()  # 1 for the first request of this item to this endpoint
    registry.totals.attempts += 1
    for c in (counters, state.both, registry.totals):
        c.enter()
    try:
        if scenario.hold:
            state.held += 1
            try:
                if not await hold(request, state, settings.hold_timeout_s):
                    counters.abandoned += 1
                    return None  # nobody is waiting for this answer any more
            finally:
                state.held -= 1
        delay = settings.latency_ms if latency_ms is None else latency_ms
        slow = scenario.slow_times is None or number <= scenario.slow_times
        if scenario.latency_ms is not None and slow:
            delay = scenario.latency_ms
        if delay:
            # A release (or a new scenario) also ends the delay, so a test never leaves a
            # 20-second request behind to slow down a shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.released.wait(), delay / 1000)
        rate = settings.failure_rate if fail_rate is None else fail_rate
        if number <= scenario.fail_times or random.random() < rate:
            counters.failed += 1
            code = scenario.fail_status if number <= scenario.fail_times else 503
            raise HTTPException(code, f"pricing: simulated failure of {endpoint}")
        counters.answered += 1
    finally:
        for c in (counters, state.both, registry.totals):
            c.in_flight -= 1
    if scenario.trickle_ms is None or not slow:
        return None
    return scenario.trickle_ms, state.released


def answer(model: BaseModel, trickle: tuple[int, asyncio.Event] | None) -> Response:
    """The model as JSON; with `trickle_ms`, its headers at once and its body byte by byte.

    A trickled answer never leaves a read waiting longer than `trickle_ms`, so only a limit on
    the whole attempt cuts it. A release (or a new scenario) sends the rest at once.
    """
    body = model.model_dump_json().encode()
    if trickle is None:
        return Response(body, media_type="application/json")
    ms, released = trickle

    async def dribble() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            if not released.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), ms / 1000)
            yield body[i : i + 1]

    return StreamingResponse(
        dribble(), media_type="application/json", headers={"Content-Length": str(len(body))}
    )


async def hold(request: Request, state: ItemState, timeout: float) -> bool:
    """Wait until the item is released; False if the client hung up first.

    A client that gave up (its timeout) closes the connection: it no longer counts as in
    flight, so `in_flight` counts only requests somebody still waits for.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not state.released.is_set() and asyncio.get_running_loop().time() < deadline:
        if await request.is_disconnected():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.released.wait(), 0.05)
    return True


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return a new pricing app with empty counters."""
    # FastAPIOffline: /docs served from files in the wheel, so it works without internet.
    app = FastAPIOffline(title="Pricing service (lab 4)", version="1.0.0")
    app.state.settings = settings or get_settings()
    app.state.registry = Registry()

    def registry_of(request: Request) -> Registry:
        registry: Registry = request.app.state.registry
        return registry

    @app.get("/healthz")
    async def healthz() -> Health:
        return Health()

    @app.get("/price/{item_id}", response_model=PriceQuote)
    async def price(
        request: Request,
        item_id: int,
        base_price: Annotated[float, Query(ge=0, allow_inf_nan=False)],
        latency_ms: LatencyQuery = None,
        fail_rate: FailRateQuery = None,
    ) -> Response:
        trickle = await behave(request, item_id, "price", latency_ms, fail_rate)
        discount = discount_of(item_id)
        quote = PriceQuote(
            item_id=item_id,
            base_price=base_price,
            discount=discount,
            price=round(base_price * (1 - discount), 2),
        )
        return answer(quote, trickle)

    @app.get("/stock/{item_id}", response_model=Stock)
    async def stock(
        request: Request,
        item_id: int,
        latency_ms: LatencyQuery = None,
        fail_rate: FailRateQuery = None,
    ) -> Response:
        trickle = await behave(request, item_id, "stock", latency_ms, fail_rate)
        stock = Stock(item_id=item_id, available=available_of(item_id))
        return answer(stock, trickle)

    @app.put("/control/items/{item_id}")
    async def configure(request: Request, item_id: int, scenario: Scenario) -> ItemView:
        return registry_of(request).configure(item_id, scenario).view()

    @app.get("/control/items/{item_id}")
    async def item_view(request: Request, item_id: int) -> ItemView:
        return registry_of(request).get(item_id).view()

    @app.post("/control/items/{item_id}/release")
    async def release(request: Request, item_id: int) -> ItemView:
        return registry_of(request).release(item_id).view()

    @app.get("/control/stats")
    async def totals(request: Request) -> TotalsView:
        return registry_of(request).totals_view()

    @app.delete("/control/items", status_code=status.HTTP_204_NO_CONTENT)
    async def reset(request: Request) -> None:
        registry_of(request).reset()

    return app


app = create_app()
