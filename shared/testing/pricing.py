"""A small client of the pricing service's control API (`labs/lab04_async/pricing/`).

Used by lab 4's tests and by later labs that run the pricing service (lab 5 on).

pricing.scenario(7, fail_times=2)   requests for item 7: the first two per endpoint fail
pricing.stats(7)["price"]           {"attempts", "arrivals_ms", "in_flight", ...}
pricing.wait_until(7, check, what)  poll the counters until `check(stats)` holds
pricing.release(7)                  let held requests of item 7 go on
pricing.totals()["in_flight"]       requests in flight now, over all items
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

Stats = dict[str, Any]


class PricingControl:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    @property
    def base_url(self) -> str:
        return str(self.http.base_url).rstrip("/")

    def scenario(self, item_id: int, **fields: Any) -> Stats:
        """Set how the pricing service treats item `item_id`; its counters restart at zero."""
        r = self.http.put(f"/control/items/{item_id}", json=fields)
        r.raise_for_status()
        return dict(r.json())

    def stats(self, item_id: int) -> Stats:
        r = self.http.get(f"/control/items/{item_id}")
        r.raise_for_status()
        return dict(r.json())

    def release(self, item_id: int) -> Stats:
        r = self.http.post(f"/control/items/{item_id}/release")
        r.raise_for_status()
        return dict(r.json())

    def totals(self) -> Stats:
        """Counters over all items: {"attempts", "in_flight", "max_in_flight"}."""
        r = self.http.get("/control/stats")
        r.raise_for_status()
        return dict(r.json())

    def attempts(self, item_id: int) -> tuple[int, int]:
        """(attempts at /price, attempts at /stock) for the item so far."""
        stats = self.stats(item_id)
        return int(stats["price"]["attempts"]), int(stats["stock"]["attempts"])

    def wait_until(
        self, item_id: int, check: Callable[[Stats], bool], timeout: float = 10
    ) -> tuple[bool, Stats]:
        """Poll the item's counters until `check` holds; return (held?, last counters)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(item_id)
            if check(stats) or time.monotonic() > deadline:
                return check(stats), stats
            time.sleep(0.01)

    def settled(self, item_id: int, quiet: float = 0.6, timeout: float = 10) -> Stats:
        """Return the counters once nothing is in flight and no attempt came for `quiet` s."""
        deadline = time.monotonic() + timeout
        last = self.stats(item_id)
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.stats(item_id)
            if _activity(stats) != _activity(last):
                last, since = stats, time.monotonic()
            elif stats["in_flight"] == 0 and time.monotonic() - since >= quiet:
                return stats
        return last


def _activity(stats: Stats) -> tuple[int, ...]:
    return (
        stats["price"]["attempts"],
        stats["stock"]["attempts"],
        stats["in_flight"],
    )
