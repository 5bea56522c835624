"""The pricing service itself (no points): the behaviour the grading relies on.

These tests talk to the pricing service directly, never to your app. If one fails, the
grading of the quote endpoint cannot be trusted: tell your instructor.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from shared.testing.pricing import PricingControl


def new_id() -> int:
    """An item id no other test uses (the pricing service keeps counters per id)."""
    return 10_000_000 + uuid.uuid4().int % 1_000_000_000


def test_pricing_answers_price_and_stock(pricing: PricingControl) -> None:
    item_id = new_id()
    pricing.scenario(item_id)
    r = pricing.http.get(f"/price/{item_id}", params={"base_price": 20})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == item_id and body["base_price"] == 20
    assert body["price"] == round(20 * (1 - body["discount"]), 2)
    r = pricing.http.get(f"/stock/{item_id}")
    assert r.status_code == 200 and isinstance(r.json()["available"], int), r.text
    stats = pricing.stats(item_id)
    assert (stats["price"]["attempts"], stats["stock"]["attempts"]) == (1, 1), stats
    assert pricing.http.get(f"/price/{item_id}").status_code == 422, "base_price is required"


def test_pricing_fails_the_first_n_requests_per_endpoint(pricing: PricingControl) -> None:
    item_id = new_id()
    pricing.scenario(item_id, fail_times=2)
    codes = [pricing.http.get(f"/stock/{item_id}").status_code for _ in range(3)]
    assert codes == [503, 503, 200], codes
    assert pricing.http.get(f"/price/{item_id}?base_price=1").status_code == 503
    pricing.scenario(item_id, fail_times=1, fail_status=400)
    assert pricing.http.get(f"/stock/{item_id}").status_code == 400
    stats = pricing.stats(item_id)
    assert stats["stock"]["attempts"] == 1 and stats["stock"]["failed"] == 1, stats


def test_pricing_holds_until_released_and_counts_overlap(pricing: PricingControl) -> None:
    item_id = new_id()
    pricing.scenario(item_id, hold=True)
    codes: list[int] = []

    def call(path: str) -> None:
        with httpx.Client(base_url=pricing.base_url, timeout=10) as own:
            codes.append(own.get(path).status_code)

    threads = [
        threading.Thread(target=call, args=(f"/price/{item_id}?base_price=3",)),
        threading.Thread(target=call, args=(f"/stock/{item_id}",)),
    ]
    for t in threads:
        t.start()
    ok, stats = pricing.wait_until(item_id, lambda s: s["held"] == 2)
    assert ok, f"both requests must be held: {stats}"
    assert stats["in_flight"] == 2 and codes == [], stats
    pricing.release(item_id)
    for t in threads:
        t.join(10)
    assert codes == [200, 200], codes
    stats = pricing.stats(item_id)
    assert stats["max_in_flight"] == 2 and stats["in_flight"] == 0, stats


def test_pricing_latency_applies_to_the_first_slow_times_requests(
    pricing: PricingControl,
) -> None:
    item_id = new_id()
    pricing.scenario(item_id, latency_ms=5_000, slow_times=1)
    try:
        pricing.http.get(f"/stock/{item_id}", timeout=0.3)
        raise AssertionError("the first request must be slow (5 s)")
    except httpx.TimeoutException:
        pass
    r = pricing.http.get(f"/stock/{item_id}", timeout=2)
    assert r.status_code == 200, "the second request must answer at once"
    stats = pricing.stats(item_id)
    assert stats["stock"]["attempts"] == 2, stats
    assert stats["stock"]["arrivals_ms"][1] >= 250, stats


def test_pricing_does_not_count_a_client_that_hung_up(pricing: PricingControl) -> None:
    item_id = new_id()
    pricing.scenario(item_id, hold=True)
    try:
        pricing.http.get(f"/stock/{item_id}", timeout=0.3)
        raise AssertionError("a held request must not answer before the release")
    except httpx.TimeoutException:
        pass  # httpx closed the connection: the pricing service must notice
    ok, stats = pricing.wait_until(item_id, lambda s: s["stock"]["abandoned"] == 1)
    assert ok and stats["in_flight"] == 0 and stats["held"] == 0, stats


def test_pricing_scenario_for_one_endpoint_leaves_the_other_alone(pricing: PricingControl) -> None:
    item_id = new_id()
    pricing.scenario(item_id, fail_times=1, only="price")
    assert pricing.http.get(f"/stock/{item_id}").status_code == 200
    codes = [pricing.http.get(f"/price/{item_id}?base_price=1").status_code for _ in range(2)]
    assert codes == [503, 200], codes


def test_pricing_trickles_a_body_slower_than_any_single_read(pricing: PricingControl) -> None:
    item_id = new_id()
    pricing.scenario(item_id, trickle_ms=100, slow_times=1)
    try:
        # Each byte comes within 0.5 s, so a per-read timeout never fires...
        with httpx.Client(base_url=pricing.base_url, timeout=0.5) as own:
            started = time.monotonic()
            r = own.get(f"/stock/{item_id}")
            took = time.monotonic() - started
        assert r.status_code == 200 and r.json()["item_id"] == item_id, r.text
        # ...yet the whole answer took about 100 ms per byte.
        assert took >= 0.1 * (len(r.content) - 1), (took, len(r.content))
        fast = pricing.http.get(f"/stock/{item_id}", timeout=1)
        assert fast.json() == r.json(), "the second answer is the same, at once"
    finally:
        pricing.release(item_id)
