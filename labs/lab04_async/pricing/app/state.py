"""What the pricing service remembers: one scenario and one set of counters per item.

The counters are how the grader sees the items service from the outside: how many attempts
reached us (retries), how many requests were in flight at once (concurrency), and whether a
request is still being held. Everything runs on one event loop, so plain ints need no lock.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Endpoint = Literal["price", "stock"]
ENDPOINTS: tuple[Endpoint, ...] = ("price", "stock")


class Scenario(BaseModel):
    """How the service treats requests for one item (body of PUT /control/items/{id})."""

    model_config = ConfigDict(extra="forbid")

    fail_times: int = Field(default=0, ge=0, description="the first N requests answer 503")
    latency_ms: int | None = Field(default=None, ge=0, description="delay (default: global)")
    slow_times: int | None = Field(
        default=None, ge=0, description="apply latency_ms to the first N requests only"
    )
    fail_status: int = Field(default=503, ge=400, le=599, description="status of a failure")
    hold: bool = Field(default=False, description="hold requests until released")
    trickle_ms: int | None = Field(
        default=None,
        ge=1,
        description="send the answer's body one byte every N ms (the first slow_times requests)",
    )
    only: Literal["price", "stock"] | None = Field(
        default=None, description="apply the scenario to this endpoint only (default: both)"
    )


class EndpointView(BaseModel):
    attempts: int
    # When each attempt arrived, in ms after the first one (the first 20 attempts): the gaps
    # show a client's timeouts and backoff pauses.
    arrivals_ms: list[float]
    in_flight: int
    max_in_flight: int
    answered: int
    failed: int
    abandoned: int  # held requests whose client hung up before the release


class ItemView(BaseModel):
    """Counters of one item, per endpoint and across both (`in_flight`, `max_in_flight`)."""

    item_id: int
    scenario: Scenario
    price: EndpointView
    stock: EndpointView
    in_flight: int
    max_in_flight: int
    held: int


class TotalsView(BaseModel):
    attempts: int
    in_flight: int
    max_in_flight: int


MAX_ARRIVALS = 20


@dataclass
class Counters:
    attempts: int = 0
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each attempt
    in_flight: int = 0
    max_in_flight: int = 0
    answered: int = 0
    failed: int = 0
    abandoned: int = 0

    def arrive(self) -> int:
        """Count an attempt; return its number (1 for the first)."""
        self.attempts += 1
        if len(self.arrivals) < MAX_ARRIVALS:
            self.arrivals.append(time.monotonic())
        return self.attempts

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def view(self) -> EndpointView:
        first = self.arrivals[0] if self.arrivals else 0.0
        return EndpointView(
            attempts=self.attempts,
            arrivals_ms=[round((t - first) * 1000, 1) for t in self.arrivals],
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            answered=self.answered,
            failed=self.failed,
            abandoned=self.abandoned,
        )


@dataclass
class ItemState:
    item_id: int
    scenario: Scenario = field(default_factory=Scenario)
    endpoints: dict[Endpoint, Counters] = field(
        default_factory=lambda: {name: Counters() for name in ENDPOINTS}
    )
    both: Counters = field(default_factory=Counters)
    held: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> ItemView:
        return ItemView(
            item_id=self.item_id,
            scenario=self.scenario,
            price=self.endpoints["price"].view(),
            stock=self.endpoints["stock"].view(),
            in_flight=self.both.in_flight,
            max_in_flight=self.both.max_in_flight,
            held=self.held,
        )


class Registry:
    """Item states by id, created on first use, plus totals over all items."""

    def __init__(self) -> None:
        self.items: dict[int, ItemState] = {}
        self.totals = Counters()

    def get(self, item_id: int) -> ItemState:
        state = self.items.get(item_id)
        if state is None:
            state = self.items[item_id] = ItemState(item_id)
        return state

    def configure(self, item_id: int, scenario: Scenario) -> ItemState:
        """Set an item's scenario and start its counters from zero."""
        old = self.items.get(item_id)
        if old is not None:
            old.released.set()  # nobody stays held by a scenario that no longer exists
        state = self.items[item_id] = ItemState(item_id, scenario=scenario)
        return state

    def release(self, item_id: int) -> ItemState:
        """Let every held request of the item go on, and hold no new ones."""
        state = self.get(item_id)
        state.scenario = state.scenario.model_copy(update={"hold": False})
        state.released.set()
        return state

    def reset(self) -> None:
        for state in self.items.values():
            state.released.set()
        self.items.clear()
        self.totals = Counters()

    def totals_view(self) -> TotalsView:
        t = self.totals
        return TotalsView(attempts=t.attempts, in_flight=t.in_flight, max_in_flight=t.max_in_flight)
