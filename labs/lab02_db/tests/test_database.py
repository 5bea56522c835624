"""Lab 2 tests that look past the API into PostgreSQL: the SQL the list sends, and rows that
another client changes or inserts behind the API's back.

They are lab 2's only, not part of its CONTRACT (`tests/conftest.py`): from lab 3 on, a cache
answers reads without asking the database, so a row changed with SQL may rightly be served
stale there for a while, and a cached list sends no query at all.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import httpx
import psycopg
import pytest

from labs.lab02_db.tests.test_contract import TASK_FILTER, TASK_STORE, listing, marker
from shared.testing.http import http_client
from shared.testing.items import create_item, item_body, show, unique_name

# Statements of the server under test that wait for a lock this test holds.
WAITING_SQL = """
SELECT query FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND wait_event_type = 'Lock'
  AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
# The index of the TOAST table of `items`: where PostgreSQL keeps long values out of line.
TOAST_INDEX_SQL = """
SELECT i.indexrelid::regclass::text FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid
WHERE c.oid = 'items'::regclass
"""


def long_text() -> str:
    """1,000 random characters of 4 bytes each: too long to stay in the row, and random enough
    that compression cannot shrink them back into it, so PostgreSQL stores them in the TOAST
    table."""
    rng = random.Random()
    return "".join(chr(rng.randint(0x10000, 0x10FFFF)) for _ in range(1000))


@contextlib.contextmanager
def long_values_on_hold(database_url: str) -> Iterator[None]:
    """Until the block ends, a statement that sends a long value of `items` to its client waits.

    Reading an out-of-line value opens the TOAST table's index, and REINDEX holds that index
    exclusively until its transaction ends. Statements that do not send the long value (a
    COUNT(*), a WHERE on other columns) run as usual.
    """
    with psycopg.connect(database_url) as locker:
        row = locker.execute(TOAST_INDEX_SQL).fetchone()
        assert row is not None, "the items table has no TOAST table (is description a text?)"
        locker.execute(f"REINDEX INDEX {row[0]}")
        try:
            yield
        finally:
            locker.rollback()


def clause(sql: str, keyword: str) -> str | None:
    """The text of `keyword`'s clause in `sql` (lower case), or None if it has none."""
    found = re.search(
        rf"\b{keyword}\b(.*?)(?=\border\s+by\b|\blimit\b|\boffset\b|\bfetch\b|$)", sql, re.S
    )
    return found.group(1) if found else None


# --------------------------------------------------------------------------- 3. filters


@pytest.mark.points(4, task=TASK_FILTER)
def test_the_list_filters_sorts_and_pages_in_sql(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    token = marker()
    made = {
        price: create_item(
            client,
            name=f"{token} {price:g}",
            price=price,
            category=token,
            description=long_text() if price == 30 else "short",
        )
        for price in (10.0, 20.0, 30.0, 40.0)
    }
    create_item(client, name=f"{token} elsewhere", price=30.0, category=marker())
    params: dict[str, str | int] = {
        "name_contains": token.upper(),
        "category": token,
        "min_price": 15,
        "max_price": 45,
        "sort": "-price",
        "limit": 1,
        "offset": 1,
    }
    request = f"GET /items?{urlencode(params)}"
    # Only the item of price 30 (the page: the second of 40, 30, 20) has a long description:
    # the statement that sends it to the app waits, and the test reads that statement.

    def get() -> httpx.Response:
        with http_client(str(client.base_url)) as own:
            return own.get("/items", params=params)

    waiting: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        with long_values_on_hold(database_url):
            answer = pool.submit(get)
            deadline = time.monotonic() + 10
            while not waiting and not answer.done() and time.monotonic() < deadline:
                time.sleep(0.01)
                waiting = [row[0] for row in db.execute(WAITING_SQL).fetchall()]
            answered = answer.done()
        r = answer.result(timeout=30)
    assert waiting, (
        f"{request} must read the matching items from PostgreSQL (the test holds the long "
        f"description of the one on the page, so that read waits), but "
        f"{'it answered at once: ' + show(r) if answered else 'no statement waited'}"
    )
    sql = " ".join(waiting[0].lower().split())
    where, order = clause(sql, "where") or "", clause(sql, "order by") or ""
    missing = [
        what
        for what, there in (
            ("WHERE on the name", "name" in where),
            ("WHERE on the category", "category" in where),
            ("WHERE on the price", "price" in where),
            ("ORDER BY price DESC", "price" in order and "desc" in order),
            ("LIMIT", re.search(r"\blimit\b|\bfetch\b", sql) is not None),
            ("OFFSET", re.search(r"\boffset\b", sql) is not None),
        )
        if not there
    ]
    assert not missing, (
        f"{request} must filter, sort and page in SQL, so that PostgreSQL sends only the page; "
        f"the statement that read the items was {waiting[0]!r}, which has no "
        f"{', no '.join(missing)}: build the WHERE from the filters and add .order_by(), "
        ".limit() and .offset() to the SELECT (loading every row and filtering, sorting or "
        "slicing in Python reads the whole table on every request)"
    )
    assert r.status_code == 200, f"{request} must answer 200: {show(r)}"
    assert [i["id"] for i in r.json()] == [made[30.0]["id"]], (
        f"{request} must answer the item of price 30 (the second of 40, 30, 20): {show(r)}"
    )
    assert r.headers.get("X-Total-Count") == "3", "X-Total-Count must count the 3 matches"


# --------------------------------------------------------------------------- 2. PostgreSQL


@pytest.mark.points(2, task=TASK_STORE)
def test_reads_see_rows_changed_in_the_database(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    item = create_item(client, price=5.0, description="before", category="db")
    url = f"/items/{item['id']}"
    r = client.get(url)
    assert r.status_code == 200 and r.json() == item, f"GET after POST: {show(r)}"
    db.execute(
        "UPDATE items SET price = 6.5, description = 'changed with SQL' WHERE id = %s",
        (item["id"],),
    )
    r = client.get(url)
    changed = {**item, "price": 6.5, "description": "changed with SQL"}
    assert r.status_code == 200 and r.json() == changed, (
        f"GET {url} must read the row from PostgreSQL: the test changed it with SQL (as psql, "
        f"a script or a second server process would) and expected {changed}, but {show(r)}. "
        "Keep no copy of the items in the process"
    )
    db.execute("DELETE FROM items WHERE id = %s", (item["id"],))
    r = client.get(url)
    assert r.status_code == 404, (
        f"the test deleted item {item['id']} with SQL, so GET {url} must answer 404: {show(r)}"
    )
    _, total = listing(client, category="db", name_contains=item["name"])
    assert total == 0, f"the list must not show the deleted item {item['name']!r} either"


@pytest.mark.points(2, task=TASK_STORE)
def test_rows_inserted_with_sql_get_ids_from_the_same_identity(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    latest = create_item(client)["id"]
    name = unique_name("by-sql")
    row, clash = None, None
    try:
        row = db.execute(
            "INSERT INTO items (name, price) VALUES (%s, 1) RETURNING id", (name,)
        ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        clash = exc.diag.message_detail or str(exc)
    if clash is not None:
        pytest.fail(
            f"a row inserted with SQL (as psql, the seed command or a second server process "
            f"would) took the identity column's next id, which the API had already given to an "
            f"item ({clash}): let the identity column assign every id, never send an id of your "
            "own in the INSERT",
            pytrace=False,
        )
    assert row is not None
    by_sql = int(row[0])
    assert by_sql > latest, (
        f"POST /items gave the id {latest}, and a row inserted with SQL right after it got the "
        f"identity column's next id, {by_sql}: the API must let the identity column assign "
        "every id (never max(id) + 1 or a counter of its own), or the ids of the API and of "
        "other clients collide"
    )
    r = client.post("/items", json=item_body())
    assert r.status_code == 201, (
        f"after a row was inserted with SQL (id {by_sql}), POST /items must still answer 201: "
        f"{show(r)}; let the identity column assign ids"
    )
    assert r.json()["id"] > by_sql, (
        f"after a row inserted with SQL got id {by_sql}, POST /items answered id "
        f"{r.json()['id']}: ids come from the identity column, which never hands out one twice"
    )
