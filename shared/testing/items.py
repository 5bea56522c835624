"""Helpers of the course's items contract (lab 1's API, which every later lab keeps).

Lab 1's contract tests use them, and so do the later labs' own tests, which create and read
items on the way to their lesson (a cached item, an order for an item, ...). Each assertion
message says what was asked and what came back, because a student reads it as feedback.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from shared.testing.http import http_client

T = TypeVar("T")


def show(r: httpx.Response) -> str:
    """One line that says what was asked and what came back, for assertion messages."""
    return f"{r.request.method} {r.request.url.path} answered {r.status_code}: {r.text[:200]!r}"


def unique_name(prefix: str = "item", length: int | None = None) -> str:
    """A name no other test (and no earlier grading run) uses; `length` pads it exactly."""
    name = f"{prefix}-{uuid.uuid4().hex}"
    if length is None:
        return name[: len(prefix) + 9]
    return (name + "x" * length)[:length] if length > len(name) else name[-length:]


def one_character_name() -> str:
    """A random one-character name (a CJK ideograph): unlikely to be taken on a server that
    keeps names unique, even when the same deployment is graded again."""
    return chr(random.randint(0x4E00, 0x9FFF))


def item_body(**fields: Any) -> dict[str, Any]:
    """A valid item body with a unique name; `fields` override or add fields."""
    return {"name": unique_name(), "price": 9.5, **fields}


def create_item(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """POST a valid item and return the created item; fail with a clear message otherwise."""
    r = client.post("/items", json=item_body(**fields))
    assert r.status_code == 201, f"POST /items with a valid item must answer 201: {show(r)}"
    item = r.json()
    assert isinstance(item, dict) and isinstance(item.get("id"), int), (
        f"POST /items must answer the created item as a JSON object with an integer `id`: {show(r)}"
    )
    return item


def total_count(client: httpx.Client) -> int:
    r = client.get("/items", params={"limit": 1})
    assert r.status_code == 200, f"GET /items?limit=1 must answer 200: {show(r)}"
    header = r.headers.get("X-Total-Count")
    assert header is not None and header.isdigit(), (
        f"GET /items must send a header X-Total-Count with the number of all items, got {header!r}"
    )
    return int(header)


def expect_422(r: httpx.Response, what: str) -> None:
    assert r.status_code == 422, f"{what} must be rejected with 422: {show(r)}"
    assert "detail" in r.json(), f"a 422 must answer JSON with a `detail` field: {show(r)}"


def detail_of(r: httpx.Response) -> Any:
    """The `detail` field of a JSON object answer; None when the body is not a JSON object."""
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("detail") if isinstance(body, dict) else None


def expect_404(r: httpx.Response, what: str, item_id: int | None = None) -> None:
    """A 404 with a JSON `detail` message; with `item_id`, the message names that id."""
    assert r.status_code == 404, f"{what} must answer 404 Not Found: {show(r)}"
    detail = detail_of(r)
    assert isinstance(detail, str) and detail, (
        f'a 404 must answer JSON like {{"detail": "Item 42 not found"}}: {show(r)}'
    )
    assert item_id is None or str(item_id) in detail, (
        f'the 404 of {what} must say which item is missing, like {{"detail": "Item {item_id} '
        f'not found"}} (raise ItemNotFoundError): {show(r)}'
    )


def at_once(base_url: str, count: int, action: Callable[[httpx.Client, int], T]) -> list[T]:
    """Run `action(client, n)` for n in 0..count-1 in threads that send at the same moment.

    Each thread builds its own client and opens its connection (a GET /healthz) before it
    waits at the barrier, so the requests really overlap: a thread that connects only after
    the others have finished tests nothing.
    """
    barrier = threading.Barrier(count)

    def run(n: int) -> T:
        with http_client(base_url) as own:
            own.get("/healthz")
            barrier.wait(timeout=60)  # generous: a busy grading machine starts threads slowly
            return action(own, n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def assert_fields(item: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for key, value in expected.items():
        assert item.get(key) == value, (
            f"{where}: field `{key}` must be {value!r}, got {item.get(key)!r} (item: {item})"
        )
