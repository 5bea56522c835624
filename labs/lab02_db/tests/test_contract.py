"""Lab 2 contract tests: items live in PostgreSQL; the list filters, sorts and refuses dupes.

Black-box over HTTP, plus a direct look into the database (the `db` fixture) where the lesson
is the database itself. Later labs re-run this module on their implementation (it is lab 2's
CONTRACT in `tests/conftest.py`, see `shared/testing/regression.py`).

The server keeps its data for the whole run (and other tests add items), so each test makes
its own items with a unique marker in their names or category and filters on it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from labs.lab01_rest.tests.test_items_contract import (
    create_item,
    expect_422,
    show,
    unique_name,
)
from shared.testing.server import AppServer

TASK_STORE = "2. Items in PostgreSQL"
TASK_FILTER = "3. Filter and sort the list"


def marker() -> str:
    """A short token to put in names or a category, so a filter finds only this test's items."""
    return f"m{uuid.uuid4().hex[:8]}"


def listing(client: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """GET /items with `params`; return the items and X-Total-Count."""
    r = client.get("/items", params=params)
    assert r.status_code == 200, f"GET /items with {params} must answer 200: {show(r)}"
    header = r.headers.get("X-Total-Count", "")
    assert header.isdigit(), (
        f"GET /items with {params} must send X-Total-Count (the number of matching items), "
        f"got {header!r}"
    )
    items = r.json()
    assert isinstance(items, list), f"GET /items must answer a JSON list: {show(r)}"
    return items, int(header)


def row_of(db: psycopg.Connection, item_id: int) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT name, price::float8, description, category FROM items WHERE id = %s", (item_id,)
    ).fetchone()


def expect_409(r: httpx.Response, what: str) -> None:
    assert r.status_code == 409, f"{what} must answer 409 Conflict: {show(r)}"
    try:
        detail = r.json().get("detail")
    except ValueError:
        detail = None
    assert isinstance(detail, str) and detail, (
        f'a 409 must answer JSON like {{"detail": "An item named ... already exists"}}: {show(r)}'
    )


# --------------------------------------------------------------------------- 2. PostgreSQL


@pytest.mark.points(5, task=TASK_STORE)
def test_items_are_rows_in_postgresql(client: httpx.Client, db: psycopg.Connection) -> None:
    item = create_item(client, price=12.5, description="stored", category="db")
    assert row_of(db, item["id"]) == (item["name"], 12.5, "stored", "db"), (
        f"POST /items must insert a row into the `items` table of DATABASE_URL; row "
        f"{item['id']} is {row_of(db, item['id'])} (did the app keep items in memory?)"
    )
    r = client.patch(f"/items/{item['id']}", json={"price": 15.0})
    assert r.status_code == 200, f"PATCH of an existing item must answer 200: {show(r)}"
    assert row_of(db, item["id"]) == (item["name"], 15.0, "stored", "db"), (
        "PATCH must update the row in PostgreSQL (and commit the transaction)"
    )
    r = client.delete(f"/items/{item['id']}")
    assert r.status_code == 204, f"DELETE of an existing item must answer 204: {show(r)}"
    assert row_of(db, item["id"]) is None, "DELETE must delete the row from PostgreSQL"


@pytest.mark.points(7, task=TASK_STORE)
def test_data_survives_a_restart(client: httpx.Client, app_server: AppServer) -> None:
    item = create_item(client, description="still here", category="durable")
    app_server.restart()
    with httpx.Client(base_url=app_server.base_url, timeout=10) as fresh:
        r = fresh.get(f"/items/{item['id']}")
        assert r.status_code == 200 and r.json() == item, (
            f"an item must survive a restart of the server (it lives in PostgreSQL, not in the "
            f"process): expected {item}, {show(r)}"
        )
        again = create_item(fresh)
    assert again["id"] > item["id"], (
        "after a restart, new ids must continue after the old ones (let PostgreSQL assign ids)"
    )


@pytest.mark.points(6, task=TASK_STORE)
def test_duplicate_name_returns_409(client: httpx.Client) -> None:
    first = create_item(client)
    r = client.post("/items", json={"name": first["name"], "price": 1.0})
    expect_409(r, "POST /items with a name that another item has")
    items, total = listing(client, name_contains=first["name"])
    assert total == 1 and [i["id"] for i in items] == [first["id"]], (
        f"a refused POST must not insert anything: found {total} items named {first['name']!r}"
    )


@pytest.mark.points(6, task=TASK_STORE)
def test_conflicting_put_or_patch_changes_nothing(client: httpx.Client) -> None:
    taken = create_item(client)
    item = create_item(client, price=3.0, description="keep", category="keep")
    url = f"/items/{item['id']}"
    expect_409(client.put(url, json={"name": taken["name"], "price": 99.0}), "PUT to a taken name")
    expect_409(
        client.patch(url, json={"name": taken["name"], "price": 99.0}), "PATCH to a taken name"
    )
    r = client.get(url)
    assert r.status_code == 200 and r.json() == item, (
        "a refused PUT or PATCH must leave the item exactly as it was (roll the transaction "
        f"back; the new price must not be saved either): expected {item}, {show(r)}"
    )
    r = client.patch(url, json={"name": item["name"], "price": 4.0})
    assert r.status_code == 200, f"PATCH that keeps the item's own name is no conflict: {show(r)}"


@pytest.mark.hidden
@pytest.mark.points(2, task=TASK_STORE)
def test_parallel_creates_with_one_name_make_one_item(client: httpx.Client) -> None:
    name = unique_name("race")
    base_url = str(client.base_url)

    def post(_: int) -> int:
        with httpx.Client(base_url=base_url, timeout=10) as own:
            return own.post("/items", json={"name": name, "price": 1.0}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(post, range(8)))
    assert codes == [201] + [409] * 7, (
        f"8 parallel POSTs of one name must give one 201 and seven 409s, got {codes}: let the "
        "unique constraint decide (a SELECT before the INSERT races)"
    )


# --------------------------------------------------------------------------- 3. filters


@pytest.mark.points(5, task=TASK_FILTER)
def test_filter_by_name_contains(client: httpx.Client) -> None:
    token = marker()
    mine = [create_item(client, name=f"Blue {token} mug"), create_item(client, name=f"{token}X")]
    create_item(client, name=f"other {marker()}")
    items, total = listing(client, name_contains=token)
    assert sorted(i["id"] for i in items) == sorted(i["id"] for i in mine) and total == 2, (
        f"GET /items?name_contains={token} must answer exactly the 2 items whose name contains "
        f"it (and X-Total-Count: 2), got ids {[i['id'] for i in items]}, total {total}"
    )
    items, total = listing(client, name_contains=token.upper())
    assert total == 2, "name_contains must ignore case (ILIKE, or lower() on both sides)"
    items, total = listing(client, name_contains="%")
    assert all("%" in i["name"] for i in items), (
        "name_contains=% must match a literal '%', not everything: escape LIKE's wildcards "
        "(SQLAlchemy: .icontains(value, autoescape=True))"
    )


@pytest.mark.points(5, task=TASK_FILTER)
def test_filter_by_price_range(client: httpx.Client) -> None:
    category = marker()
    prices = [1.0, 5.0, 10.0, 20.0, 50.0]
    by_price = {p: create_item(client, price=p, category=category)["id"] for p in prices}
    cases = [({"min_price": 10}, [10.0, 20.0, 50.0]), ({"max_price": 5}, [1.0, 5.0])]
    cases.append(({"min_price": 5, "max_price": 20}, [5.0, 10.0, 20.0]))
    for params, expected in cases:
        items, total = listing(client, category=category, **params)
        got = sorted(i["price"] for i in items)
        assert got == expected and total == len(expected), (
            f"GET /items?category=...&{'&'.join(f'{k}={v}' for k, v in params.items())} must "
            f"answer the prices {expected} (bounds included), got {got}, X-Total-Count {total}"
        )
    everything = [i["id"] for i in listing(client, category=category)[0]]
    assert everything == sorted(by_price.values()), (
        f"without price bounds, GET /items?category=... must answer all 5 items in id order, "
        f"got ids {everything}"
    )


@pytest.mark.points(3, task=TASK_FILTER)
def test_filter_by_category(client: httpx.Client) -> None:
    category = marker()
    mine = [create_item(client, category=category)["id"] for _ in range(3)]
    create_item(client, category=marker())
    items, total = listing(client, category=category, limit=2)
    assert total == 3 and [i["id"] for i in items] == mine[:2], (
        f"GET /items?category=X&limit=2 must answer the first 2 of the 3 items of category X "
        f"in id order, with X-Total-Count: 3 (the count of all matches, not of the page); "
        f"got ids {[i['id'] for i in items]}, total {total}"
    )


@pytest.mark.points(5, task=TASK_FILTER)
def test_sort_by_whitelisted_fields(client: httpx.Client) -> None:
    category = marker()
    specs = [("b", 30.0), ("d", 10.0), ("a", 20.0), ("c", 10.0)]
    made = [
        create_item(client, name=f"{n}-{category}", price=p, category=category) for n, p in specs
    ]
    ids = {i["name"][0]: i["id"] for i in made}
    expected = {
        "price": ["d", "c", "a", "b"] if ids["d"] < ids["c"] else ["c", "d", "a", "b"],
        "-price": ["b", "a", "d", "c"] if ids["d"] < ids["c"] else ["b", "a", "c", "d"],
        "name": ["a", "b", "c", "d"],
        "-name": ["d", "c", "b", "a"],
        "id": ["b", "d", "a", "c"],
        "-id": ["c", "a", "d", "b"],
    }
    for sort, names in expected.items():
        items, _ = listing(client, category=category, sort=sort)
        got = [i["name"][0] for i in items]
        assert got == names, (
            f"GET /items?sort={sort} must order the items as {names} (equal prices by id), "
            f"got {got}"
        )


@pytest.mark.points(4, task=TASK_FILTER)
def test_unknown_sort_or_bad_filter_returns_422(client: httpx.Client) -> None:
    item = create_item(client, price=7.0, category=marker())
    items, _ = listing(client, category=item["category"], sort="-price")
    assert [i["id"] for i in items] == [item["id"]], "GET /items?sort=-price must work"
    for params in (
        {"sort": "description"},
        {"sort": "price; DROP TABLE items"},
        {"min_price": "cheap"},
        {"min_price": 10, "max_price": 5},
    ):
        expect_422(client.get("/items", params=params), f"GET /items with {params}")
    r = client.get(f"/items/{item['id']}")
    assert r.status_code == 200, f"the table must still be there: {show(r)}"


# Later labs star-import this module: export exactly the tests.
__all__ = [name for name in dict(globals()) if name.startswith("test_")]
