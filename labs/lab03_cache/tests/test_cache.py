"""Lab 3: a Redis cache in front of PostgreSQL, graded by looking at both.

How the tests know an answer came from Redis: they change a row with SQL behind the API's
back. A cached read still answers the old value; a read that went to the database answers the
new one. The keys the contract names (with REDIS_PREFIX in front):

    item:<id>             GET /items/{id}
    stats                 GET /items/stats
    stats:computations    a counter the app increments each time it really computes the stats

Every key must have a TTL. Reads answer `X-Cache: HIT` or `X-Cache: MISS`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis

from shared.testing.http import http_client
from shared.testing.items import create_item, expect_404, show, unique_name
from shared.testing.server import AppServer
from shared.testing.tcp_proxy import TcpProxy

TASK_READS = "1. Cache-aside reads"
TASK_TTL = "2. A TTL on every key"
TASK_WRITES = "3. Writes invalidate what they change"
TASK_STATS = "4. Stats, cached"
TASK_DOWN = "5. Redis down: the API still answers"
TASK_STAMPEDE = "6. Stampede guard"

MAX_TTL = 86_400
TTL_WAIT = 0.5  # seconds between two looks at a key's TTL, with a HIT in between
CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused
# A Redis that accepts connections but never answers must cost a request at most this long
# ("short timeouts"; the solutions use 0.5 s in lab 3 and 2 s in lab 4).
REDIS_HANG_LIMIT = 5.0
# After a Redis failure the app skips Redis for CACHE_RETRY_SECONDS (the grader sets it), then
# tries again: once Redis answers, a read must be a HIT again within RETRY + REDIS_BACK_GRACE.
RETRY = 3.0
REDIS_BACK_GRACE = 4.0
LOCK_MS = 10_000  # the handout's lock: SET <prefix>lock:stats <token> NX PX 10000


def read(client: httpx.Client, url: str, **params: Any) -> tuple[Any, str]:
    """GET `url`; return its JSON and its X-Cache header (checked to be HIT or MISS)."""
    r = client.get(url, params=params)
    assert r.status_code == 200, f"GET {url} must answer 200: {show(r)}"
    cache = r.headers.get("X-Cache", "")
    assert cache in ("HIT", "MISS"), (
        f"GET {url} must send the header `X-Cache: HIT` (answered from Redis) or "
        f"`X-Cache: MISS` (from PostgreSQL), got {cache!r}"
    )
    return r.json(), cache


def warm(client: httpx.Client, url: str, **params: Any) -> Any:
    """Read twice; the second read must be a HIT. Return the cached JSON."""
    first, cache = read(client, url, **params)
    second, again = read(client, url, **params)
    assert again == "HIT", (
        f"the second GET {url} in a row must be answered from Redis (X-Cache: HIT), got "
        f"{cache} then {again}"
    )
    assert second == first, f"a cache HIT must answer what the MISS answered: {first} vs {second}"
    return second


def change_behind_the_back(db: psycopg.Connection, item_id: int, price: float) -> None:
    db.execute("UPDATE items SET price = %s WHERE id = %s", (price, item_id))


def marker() -> str:
    return f"c{uuid.uuid4().hex[:8]}"


def computations(redis_client: redis.Redis[bytes], redis_prefix: str) -> int:
    value = redis_client.get(f"{redis_prefix}stats:computations")
    return int(value or 0)


def read_page(client: httpx.Client, **params: Any) -> tuple[list[int], int | None, str]:
    """GET /items; return the ids on the page, X-Total-Count (None if absent) and X-Cache."""
    r = client.get("/items", params=params)
    assert r.status_code == 200, f"GET /items must answer 200: {show(r)}"
    page = r.json()
    cache = r.headers.get("X-Cache", "")
    assert cache in ("HIT", "MISS"), (
        f"GET /items must send the header `X-Cache: HIT` or `X-Cache: MISS`, got {cache!r}"
    )
    header = r.headers.get("X-Total-Count", "")
    return [i["id"] for i in page], int(header) if header.isdigit() else None, cache


def category_stats(stats: Any, category: str) -> dict[str, Any]:
    """The entry of `category` in a GET /items/stats answer (fails if there is none)."""
    found = [c for c in stats.get("categories", []) if c.get("category") == category]
    assert len(found) == 1, (
        f"GET /items/stats must answer one entry per category, also for {category!r} (its items "
        f"were just created through the API): found {len(found)}"
    )
    entry: dict[str, Any] = found[0]
    return entry


def wait_for(check: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll `check` every 10 ms until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


LOCK_WAITERS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND state = 'active'
"""


def lock_waiters(db: psycopg.Connection) -> int:
    """How many statements of the server under test wait for a lock we hold."""
    row = db.execute(LOCK_WAITERS_SQL).fetchone()
    return int(row[0]) if row else 0


WAITING_QUERIES_SQL = """
SELECT query FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND state = 'active'
"""


def waiting_queries(db: psycopg.Connection) -> list[str]:
    """The statements of the server under test that wait for a lock we hold."""
    return [str(row[0]) for row in db.execute(WAITING_QUERIES_SQL).fetchall()]


class HeldStats:
    """GET /items/stats in a thread, its query held by a table lock until `release()`."""

    def __init__(self, database_url: str, db: psycopg.Connection, base_url: str) -> None:
        self.db = db
        self.locker = psycopg.connect(database_url)
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.base_url = base_url
        self.answer: Future[httpx.Response] | None = None

    def start(self) -> None:
        # ACCESS EXCLUSIVE: the stats SELECT waits until we commit (nothing else runs now).
        self.locker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        self.answer = self.pool.submit(httpx.get, f"{self.base_url}/items/stats", timeout=30)
        answer = self.answer
        waiting = wait_for(lambda: lock_waiters(self.db) >= 1 or answer.done())
        assert waiting and not answer.done(), (
            "GET /items/stats right after its key was deleted must run the stats query (the "
            "test holds a lock on the table, so the query waits), but "
            f"{'it answered: ' + show(answer.result()) if answer.done() else 'it never did'}"
        )

    def release(self) -> httpx.Response:
        self.locker.commit()
        assert self.answer is not None
        r = self.answer.result(timeout=30)
        assert r.status_code == 200, f"GET /items/stats must answer 200: {show(r)}"
        return r

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.locker.commit()
        self.locker.close()
        self.pool.shutdown(wait=True)


@contextlib.contextmanager
def stats_on_hold(database_url: str, db: psycopg.Connection, base_url: str) -> Iterator[HeldStats]:
    held = HeldStats(database_url, db, base_url)
    try:
        yield held
    finally:
        held.close()


# --------------------------------------------------------------------------- 1. reads


@pytest.mark.points(6, task=TASK_READS)
def test_item_read_misses_then_hits(client: httpx.Client) -> None:
    item = create_item(client, category="cached")
    body, cache = read(client, f"/items/{item['id']}")
    assert cache == "MISS" and body == item, (
        f"the first GET of a new item must come from the database (X-Cache: MISS) and answer "
        f"the item: got {cache}, {body}"
    )
    cached = warm(client, f"/items/{item['id']}")
    assert cached == item, f"a cached item must be the item itself: expected {item}, got {cached}"


@pytest.mark.points(10, task=TASK_READS)
def test_second_read_is_served_from_redis(
    client: httpx.Client,
    db: psycopg.Connection,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    item = create_item(client, price=10.0)
    url = f"/items/{item['id']}"
    warm(client, url)
    assert redis_client.exists(f"{redis_prefix}item:{item['id']}"), (
        f"a cached item must be stored under the key `<REDIS_PREFIX>item:<id>` "
        f"({redis_prefix}item:{item['id']})"
    )
    change_behind_the_back(db, item["id"], 99.0)
    body, cache = read(client, url)
    assert cache == "HIT" and body["price"] == 10.0, (
        "after the row changed in PostgreSQL behind the API's back, a cached read must still "
        f"answer the cached price 10.0 (it must not query the database): got {body['price']} "
        f"with X-Cache: {cache}"
    )


@pytest.mark.points(5, task=TASK_READS)
def test_list_pages_are_cached(client: httpx.Client, db: psycopg.Connection) -> None:
    category = marker()
    item = create_item(client, price=5.0, category=category)
    page = warm(client, "/items", category=category)
    assert [i["id"] for i in page] == [item["id"]], f"GET /items?category=... answered {page}"
    change_behind_the_back(db, item["id"], 6.0)
    page, cache = read(client, "/items", category=category)
    assert cache == "HIT" and page[0]["price"] == 5.0, (
        "GET /items with the same query must be answered from Redis the second time "
        f"(X-Cache: HIT, the cached price 5.0): got {cache}, {page}"
    )


@pytest.mark.points(3, task=TASK_READS)
def test_each_list_query_is_cached_on_its_own(client: httpx.Client) -> None:
    category = marker()
    ids = [create_item(client, price=p, category=category)["id"] for p in (3.0, 1.0, 2.0)]
    queries: list[tuple[dict[str, Any], list[int]]] = [
        ({"category": category, "limit": 1}, ids[:1]),
        ({"category": category, "limit": 1, "offset": 1}, ids[1:2]),
        ({"category": category, "limit": 2, "offset": 1}, ids[1:]),
        ({"category": category, "sort": "-price"}, [ids[0], ids[2], ids[1]]),
        ({"category": category, "max_price": 2.5}, [ids[1], ids[2]]),
    ]
    for round_ in ("first", "second"):
        for params, want in queries:
            got, _, cache = read_page(client, **params)
            assert got == want, (
                f"GET /items?{params} ({round_} read, X-Cache: {cache}) must answer the items "
                f"{want}, got {got}: a list page's key must contain the whole query (filters, "
                "sort, limit and offset), or one page is answered for another"
            )
            assert round_ == "first" or cache == "HIT", (
                f"GET /items?{params} read a second time must be a HIT, got {cache}"
            )


@pytest.mark.points(3, task=TASK_READS)
def test_a_cached_page_keeps_its_total_count(client: httpx.Client) -> None:
    category = marker()
    for price in (1.0, 2.0, 3.0):
        create_item(client, price=price, category=category)
    first, total, cache = read_page(client, category=category, limit=1)
    again, cached_total, again_cache = read_page(client, category=category, limit=1)
    assert (cache, total) == ("MISS", 3) and again_cache == "HIT" and again == first, (
        f"GET /items?category=...&limit=1 must be a MISS with X-Total-Count 3, then a HIT with "
        f"the same page: got {cache} {total} {first}, then {again_cache} {again}"
    )
    assert cached_total == 3, (
        "a page answered from Redis must send the same X-Total-Count as the MISS did (3 items "
        f"match, the page shows 1), got {cached_total}: cache the total with the page"
    )


# --------------------------------------------------------------------------- 2. TTL


@pytest.mark.points(5, task=TASK_TTL)
def test_item_key_has_a_ttl(
    client: httpx.Client, redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    item = create_item(client)
    key = f"{redis_prefix}item:{item['id']}"
    warm(client, f"/items/{item['id']}")
    ttl = redis_client.ttl(key)
    assert 0 < ttl <= MAX_TTL, (
        f"the key {key} must expire (SET ... EX seconds), with a TTL of at most a day; Redis "
        f"says TTL {ttl} (-1: no TTL, -2: no such key)"
    )
    before = redis_client.pttl(key)
    time.sleep(TTL_WAIT)
    _, cache = read(client, f"/items/{item['id']}")
    after = redis_client.pttl(key)
    assert cache == "HIT" and after <= before - TTL_WAIT * 1000 + 100, (
        f"a HIT must not renew the key's TTL (no GETEX, no EXPIRE on a read): the TTL bounds "
        f"how old a cached copy can get, and a key read every few seconds would never expire. "
        f"{key} had {before} ms left; {TTL_WAIT:g} s and a read (X-Cache: {cache}) later it "
        f"has {after} ms"
    )


@pytest.mark.points(5, task=TASK_TTL)
def test_every_key_has_a_ttl(
    client: httpx.Client, redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    category = marker()
    item = create_item(client, category=category)
    warm(client, f"/items/{item['id']}")
    warm(client, "/items", category=category)
    read(client, "/items/stats")
    client.patch(f"/items/{item['id']}", json={"price": 1.0})
    read(client, "/items/stats")
    keys = list(redis_client.scan_iter(match=f"{redis_prefix}*", count=1000))
    assert keys, f"the app must write its keys under REDIS_PREFIX ({redis_prefix!r})"
    forever = [k.decode() for k in keys if redis_client.ttl(k) == -1]
    assert not forever, (
        f"every key the app writes must have a TTL (a forgotten key lives forever and fills "
        f"Redis); without one: {forever[:5]}"
    )


# --------------------------------------------------------------------------- 3. invalidation


@pytest.mark.points(5, task=TASK_WRITES)
def test_put_invalidates_the_item(client: httpx.Client, db: psycopg.Connection) -> None:
    item = create_item(client, price=10.0)
    url = f"/items/{item['id']}"
    warm(client, url)
    change_behind_the_back(db, item["id"], 11.0)  # proves the next read really goes to SQL
    r = client.put(url, json={"name": item["name"], "price": 20.0, "category": "put"})
    assert r.status_code == 200, f"PUT of an existing item must answer 200: {show(r)}"
    body, cache = read(client, url)
    assert cache == "MISS" and body["price"] == 20.0 and body["category"] == "put", (
        "after a PUT, the next GET must come from the database (delete item:<id> after the "
        f"commit): got X-Cache: {cache}, {body}"
    )
    cached = warm(client, url)
    assert cached["price"] == 20.0, f"after a PUT, the cache must fill with the new item: {cached}"


@pytest.mark.points(5, task=TASK_WRITES)
def test_patch_invalidates_the_item(client: httpx.Client) -> None:
    item = create_item(client, price=10.0, description="old")
    url = f"/items/{item['id']}"
    warm(client, url)
    r = client.patch(url, json={"description": "new"})
    assert r.status_code == 200, f"PATCH of an existing item must answer 200: {show(r)}"
    body, cache = read(client, url)
    assert cache == "MISS" and body["description"] == "new", (
        f"after a PATCH, GET must answer the new item from the database: {cache}, {body}"
    )


@pytest.mark.points(4, task=TASK_WRITES)
def test_delete_invalidates_the_item(client: httpx.Client) -> None:
    item = create_item(client)
    url = f"/items/{item['id']}"
    warm(client, url)
    r = client.delete(url)
    assert r.status_code == 204, f"DELETE of an existing item must answer 204: {show(r)}"
    expect_404(client.get(url), "GET of a deleted item that was cached (delete its key)")


@pytest.mark.points(4, task=TASK_WRITES)
def test_writes_invalidate_lists_and_stats(client: httpx.Client, twin_server: AppServer) -> None:
    category = marker()
    first = create_item(client, category=category)
    warm(client, "/items", category=category)
    stats = warm(client, "/items/stats")
    with http_client(twin_server.base_url) as twin:
        # A page only the other process has read: its cache must be in Redis, and so must be
        # whatever a write uses to make it stale (not a dict or a set in one process).
        warm(twin, "/items", category=category, limit=50)
        second = create_item(client, category=category)
        page, cache = read(client, "/items", category=category)
        assert cache == "MISS" and [i["id"] for i in page] == [first["id"], second["id"]], (
            f"a POST must make cached list pages stale: GET /items?category=... must show the "
            f"new item at once, got X-Cache: {cache} and ids {[i['id'] for i in page]}"
        )
        ids, _, cache = read_page(twin, category=category, limit=50)
    assert ids == [first["id"], second["id"]], (
        "a POST through one process of the app must make the list pages stale in every "
        "process (as under `uvicorn --workers 2`): a second process that had cached GET "
        f"/items?category=...&limit=50 answered ids {ids} (X-Cache: {cache}) without the new "
        "item. Keep list pages, and what a write needs to find them (e.g. a generation), in "
        "Redis, not in the memory of one process"
    )
    fresh, cache = read(client, "/items/stats")
    assert cache == "MISS" and fresh["total"] == stats["total"] + 1, (
        f"a POST must delete the cached stats: total must grow from {stats['total']} to "
        f"{stats['total'] + 1}, got {fresh['total']} (X-Cache: {cache})"
    )


@pytest.mark.points(4, task=TASK_WRITES)
def test_a_write_keeps_other_items_cached(client: httpx.Client) -> None:
    kept, changed = create_item(client), create_item(client)
    warm(client, f"/items/{kept['id']}")
    r = client.patch(f"/items/{changed['id']}", json={"price": 2.0})
    assert r.status_code == 200, f"PATCH of an existing item must answer 200: {show(r)}"
    _, cache = read(client, f"/items/{kept['id']}")
    assert cache == "HIT", (
        "a write must invalidate only the keys it affects: after PATCH of another item, this "
        "item must still be a HIT (do not FLUSHDB or delete every item key)"
    )


@pytest.mark.points(4, task=TASK_WRITES)
def test_invalidation_comes_after_the_commit(
    client: httpx.Client, database_url: str, db: psycopg.Connection
) -> None:
    item = create_item(client, price=10.0)
    url = f"/items/{item['id']}"
    warm(client, url)
    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(max_workers=1) as pool:
        # Our transaction locks the row, so the server's UPDATE waits for our COMMIT.
        locker.execute("SELECT id FROM items WHERE id = %s FOR UPDATE", (item["id"],))
        patch: Future[httpx.Response] = pool.submit(
            httpx.patch, f"{client.base_url}{url}", json={"price": 20.0}, timeout=30
        )
        try:
            waiting = wait_for(lambda: lock_waiters(db) >= 1 or patch.done())
            assert waiting and not patch.done(), (
                f"PATCH {url} should wait for the row lock the test holds, but "
                f"{'it answered: ' + show(patch.result()) if patch.done() else 'it never did'}"
            )
            # A read while the write waits for its COMMIT: it sees the committed price 10.0.
            read(client, url)
        finally:
            locker.commit()
        r = patch.result(timeout=30)
    assert r.status_code == 200, f"PATCH {url} must answer 200 once the lock is gone: {show(r)}"
    body, cache = read(client, url)
    assert body["price"] == 20.0, (
        f"after a PATCH answered 200, GET {url} must answer the new price 20.0, got "
        f"{body['price']} (X-Cache: {cache}). Delete the keys *after* the commit: deleted "
        "before it, a read that comes in between caches the old row again (question 3)"
    )


@pytest.mark.points(3, task=TASK_WRITES)
def test_put_and_patch_make_list_pages_and_stats_stale(client: httpx.Client) -> None:
    category = marker()
    cheap = create_item(client, price=10.0, category=category)
    dear = create_item(client, price=20.0, category=category)
    expected = {cheap["id"]: 10.0, dear["id"]: 20.0}
    for method, item, price in (("PATCH", dear, 30.0), ("PUT", cheap, 40.0)):
        warm(client, "/items", category=category)
        warm(client, "/items/stats")
        body: dict[str, Any] = {"price": price}
        if method == "PUT":
            body |= {"name": item["name"], "category": category}
        r = client.request(method, f"/items/{item['id']}", json=body)
        assert r.status_code == 200, f"{method} of an existing item must answer 200: {show(r)}"
        expected[item["id"]] = price
        page, cache = read(client, "/items", category=category)
        prices = {i["id"]: i["price"] for i in page}
        assert prices == expected, (
            f"after a {method}, a list page that shows the item must show its new price at "
            f"once (start a new list generation on every write, not only on POST): expected "
            f"{expected}, got {prices} (X-Cache: {cache})"
        )
        stats, cache = read(client, "/items/stats")
        top = category_stats(stats, category).get("max_price")
        assert top == price, (
            f"after a {method}, the stats must be computed again: max_price of the item's "
            f"category must be {price}, got {top} (X-Cache: {cache}); delete the stats key on "
            "every write"
        )


@pytest.mark.points(3, task=TASK_WRITES)
def test_delete_makes_list_pages_and_stats_stale(client: httpx.Client) -> None:
    category = marker()
    gone = create_item(client, category=category)
    kept = create_item(client, category=category)
    warm(client, "/items", category=category)
    before = warm(client, "/items/stats")
    r = client.delete(f"/items/{gone['id']}")
    assert r.status_code == 204, f"DELETE of an existing item must answer 204: {show(r)}"
    ids, total, cache = read_page(client, category=category)
    assert ids == [kept["id"]] and total == 1, (
        f"after a DELETE, list pages must no longer show the item: GET /items?category=... "
        f"answered ids {ids}, X-Total-Count {total} (X-Cache: {cache})"
    )
    stats, cache = read(client, "/items/stats")
    count = category_stats(stats, category).get("count")
    assert stats.get("total") == before["total"] - 1 and count == 1, (
        f"after a DELETE, the stats must be computed again: total {before['total']} must "
        f"become {before['total'] - 1} and the category's count 1, got {stats.get('total')} "
        f"and {count} (X-Cache: {cache})"
    )


@pytest.mark.points(2, task=TASK_WRITES)
def test_a_refused_write_leaves_the_cache_as_it_was(client: httpx.Client) -> None:
    taken = create_item(client)
    item = create_item(client, price=3.0, category=marker())
    url = f"/items/{item['id']}"
    warm(client, url)
    r = client.put(url, json={"name": taken["name"], "price": 99.0})
    assert r.status_code == 409, f"PUT to a taken name must answer 409: {show(r)}"
    body, cache = read(client, url)
    assert body == item, (
        f"a refused PUT (409) changes nothing: GET {url} must answer the item as it was, "
        f"{item}, got {body} (X-Cache: {cache}). Touch the cache only after the commit"
    )
    missing = item["id"] + 1_000_000
    r = client.put(f"/items/{missing}", json={"name": unique_name("ghost"), "price": 1.0})
    assert r.status_code == 404, f"PUT of an item that does not exist is a 404: {show(r)}"
    expect_404(client.get(f"/items/{missing}"), "GET of an item whose PUT was refused (404)")


# --------------------------------------------------------------------------- 4. stats

STATS_SQL = """
SELECT category, count(*), min(price)::float8, max(price)::float8, avg(price)::float8,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY price),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY price),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY price)
FROM items GROUP BY category
"""
STATS_FIELDS = ("count", "min_price", "max_price", "avg_price", "p50_price", "p90_price")


@pytest.mark.points(10, task=TASK_STATS)
def test_stats_match_the_database(
    base_url: str,
    database_url: str,
    db: psycopg.Connection,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    redis_client.delete(f"{redis_prefix}stats")
    with stats_on_hold(database_url, db, base_url) as held:
        held.start()  # the stats query now waits for the table lock: look at its SQL
        queries = waiting_queries(db)
        r = held.release()
    stats, cache = r.json(), r.headers.get("X-Cache")
    assert cache == "MISS", "GET /items/stats right after its key was deleted must be a MISS"
    expected = {row[0]: row[1:] for row in db.execute(STATS_SQL).fetchall()}
    total = sum(row[0] for row in expected.values())
    assert stats.get("total") == total, (
        f"GET /items/stats must answer `total`: the number of items ({total}), got "
        f"{stats.get('total')}"
    )
    got = {c.get("category"): c for c in stats.get("categories", [])}
    assert set(got) == set(expected), (
        f"GET /items/stats must answer one entry in `categories` per category (null for items "
        f"without one): expected {sorted(expected, key=str)}, got {sorted(got, key=str)}"
    )
    for category, row in expected.items():
        for field, value in zip((*STATS_FIELDS, "p99_price"), row, strict=True):
            answer = got[category].get(field)
            # Money is rounded to the nearest cent: at most half a cent from PostgreSQL's
            # exact value (a tolerance of a whole cent would let truncation through).
            if field == "count":
                right = answer == value
            else:
                right = in_cents(answer) and abs(answer - value) <= 0.005 + 1e-9
            assert right, (
                f"stats of category {category!r}: `{field}` must be {value:.2f} (PostgreSQL: "
                f"{value!r}; percentiles by percentile_cont, money rounded to the nearest "
                f"cent), got {answer}"
            )
    sql = [" ".join(q.lower().split()) for q in queries]
    assert any("percentile_cont" in q and "group by" in q for q in sql), (
        "the stats must be computed by PostgreSQL: one SELECT ... GROUP BY category with "
        "count(*), min, max, avg and percentile_cont(...) WITHIN GROUP (ORDER BY price), not by "
        "loading every price and summarising them in Python (100,000 rows on every miss); the "
        f"statement GET /items/stats ran was: {'; '.join(q[:300] for q in sql) or 'none'}"
    )


def in_cents(value: Any) -> bool:
    return isinstance(value, int | float) and round(value, 2) == value


@pytest.mark.points(4, task=TASK_STATS)
def test_stats_are_rounded_to_cents(client: httpx.Client) -> None:
    category = marker()
    for price in (1.0, 2.0, 4.0, 10.07):
        create_item(client, price=price, category=category)
    stats, _ = read(client, "/items/stats")
    entry = category_stats(stats, category)
    # percentile_cont interpolates between neighbours: p90 = 4 + 0.7 * 6.07 = 8.249;
    # the average is 4.2675; rounded to the nearest cent (not cut) they are 8.25 and 4.27.
    expected = {
        "count": 4,
        "min_price": 1.0,
        "max_price": 10.07,
        "avg_price": 4.27,
        "p50_price": 3.0,
        "p90_price": 8.25,
        "p99_price": 9.89,
    }
    wrong = {f: entry.get(f) for f, v in expected.items() if entry.get(f) != pytest.approx(v)}
    assert not wrong, (
        f"stats of a category with the prices 1.00, 2.00, 4.00 and 10.07 must be {expected}; "
        f"wrong: {wrong}. Percentiles by percentile_cont (interpolated, not percentile_disc), "
        "money rounded to the nearest cent (round(x, 2), not truncated)"
    )
    uneven = [
        (c.get("category"), f, c.get(f))
        for c in stats.get("categories", [])
        for f in (*STATS_FIELDS[1:], "p99_price")
        if not in_cents(c.get(f))
    ]
    assert not uneven, f"every amount of money in the stats must be in cents: {uneven[:3]}"


@pytest.mark.points(7, task=TASK_STATS)
def test_stats_are_cached_with_a_ttl(
    client: httpx.Client,
    db: psycopg.Connection,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    redis_client.delete(f"{redis_prefix}stats")
    stats = warm(client, "/items/stats")
    ttl = redis_client.ttl(f"{redis_prefix}stats")
    assert 0 < ttl <= MAX_TTL, (
        f"the stats must be cached under {redis_prefix}stats with a TTL; Redis says TTL {ttl}"
    )
    db.execute("INSERT INTO items (name, price) VALUES (%s, 1)", (f"behind {marker()}",))
    again, cache = read(client, "/items/stats")
    assert cache == "HIT" and again["total"] == stats["total"], (
        "a row inserted behind the API's back must not show in the cached stats (they must "
        f"come from Redis): total {stats['total']} became {again['total']} ({cache})"
    )


# --------------------------------------------------------------------------- 5. Redis down


@pytest.fixture(scope="module")
def no_redis_server(impl_dir: Path, app_env: dict[str, str]) -> Iterator[AppServer]:
    """A second server on the same database whose REDIS_URL points at a closed port."""
    with AppServer(impl_dir, {**app_env, "REDIS_URL": CLOSED_REDIS}) as server:
        yield server


@pytest.mark.points(10, task=TASK_DOWN)
def test_api_answers_without_redis(no_redis_server: AppServer) -> None:
    category = marker()
    with httpx.Client(base_url=no_redis_server.base_url, timeout=10) as down:
        item = create_item(down, category=category)
        for url, params in (
            (f"/items/{item['id']}", {}),
            ("/items", {"category": category}),
            ("/items/stats", {}),
        ):
            r = down.get(url, params=params)
            assert r.status_code == 200, (
                f"with Redis unreachable ({CLOSED_REDIS}) GET {url} must still answer 200 from "
                f"PostgreSQL (catch redis.RedisError and treat it as a miss): {show(r)}"
            )
            assert r.headers.get("X-Cache") == "MISS", (
                f"without Redis nothing can be a HIT: GET {url} said X-Cache: "
                f"{r.headers.get('X-Cache')!r}"
            )
        r = down.patch(f"/items/{item['id']}", json={"price": 3.0})
        assert r.status_code == 200, f"PATCH without Redis must answer 200: {show(r)}"
        after = down.get(f"/items/{item['id']}").json()
        assert after.get("price") == 3.0, (
            f"without Redis, GET after a PATCH must answer the new price 3.0, got {after}"
        )
        r = down.delete(f"/items/{item['id']}")
        assert r.status_code == 204, f"DELETE without Redis must answer 204: {show(r)}"


@pytest.mark.points(5, task=TASK_DOWN)
def test_redis_outage_is_logged(no_redis_server: AppServer) -> None:
    with httpx.Client(base_url=no_redis_server.base_url, timeout=10) as down:
        down.get("/items/stats")
        down.get("/items", params={"limit": 1})
    lines = no_redis_server.log_path.read_text(errors="replace").splitlines()
    found = [ln for ln in lines if "redis" in ln.lower() or "cache" in ln.lower()]
    assert any("WARNING" in ln for ln in found), (
        "when Redis is unreachable the app must say so in its log: a WARNING line that "
        f"mentions the cache or Redis (logging.getLogger(__name__).warning(...)); the log "
        f"ends with:\n{no_redis_server.log_tail(8)}"
    )
    assert "Traceback" not in "\n".join(lines), (
        "a Redis outage is expected, not a crash: log one line, not a traceback"
    )


@pytest.fixture(scope="module")
def hanging_redis_server(
    impl_dir: Path, app_env: dict[str, str], redis_url: str
) -> Iterator[tuple[AppServer, TcpProxy]]:
    """A second server on the same database whose Redis accepts connections and never answers
    (a stalled proxy in front of the real Redis; `resume()` makes it answer again)."""
    target = urlsplit(redis_url)
    hangs = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    hangs.stall()
    env = {**app_env, "REDIS_URL": hangs.url_for(redis_url), "CACHE_RETRY_SECONDS": str(RETRY)}
    try:
        with AppServer(impl_dir, env) as server:
            try:
                yield server, hangs
            finally:
                hangs.cut()  # wake up a request still waiting for Redis: the server stops now
    finally:
        hangs.cut()


@pytest.mark.points(6, task=TASK_DOWN)
def test_a_hanging_redis_costs_one_short_timeout(
    client: httpx.Client, hanging_redis_server: tuple[AppServer, TcpProxy]
) -> None:
    server, hangs = hanging_redis_server
    category = marker()
    item = create_item(client, category=category)  # through the server with a working Redis
    with http_client(server.base_url, timeout=REDIS_HANG_LIMIT) as slow:

        def answer(method: str, url: str, **kwargs: Any) -> httpx.Response:
            try:
                r = slow.request(method, url, **kwargs)
            except httpx.TimeoutException:
                pytest.fail(
                    f"with a Redis that accepts connections but never answers, {method} {url} "
                    f"got no answer within {REDIS_HANG_LIMIT:g} s: give the Redis client short "
                    "timeouts (socket_connect_timeout, socket_timeout) and treat a timeout "
                    "(redis.TimeoutError, a RedisError) as a miss",
                    pytrace=False,
                )
            assert r.status_code < 300, (
                f"with a Redis that hangs, {method} {url} must still answer from PostgreSQL "
                f"(catch redis.RedisError, timeouts included): {show(r)}"
            )
            assert method != "GET" or r.headers.get("X-Cache") == "MISS", (
                f"without a working Redis nothing can be a HIT: {method} {url} said X-Cache: "
                f"{r.headers.get('X-Cache')!r}"
            )
            return r

        first = answer("GET", f"/items/{item['id']}")
        assert first.json() == item, f"GET /items/{{id}} answered {first.json()}, not {item}"
        tried = hangs.connections
        assert tried >= 1, "a cache-aside read must ask Redis first: it never connected"
        # Redis just failed: for the next few seconds (cache_retry_seconds) leave it alone.
        answer("GET", f"/items/{item['id']}")
        answer("GET", "/items", params={"category": category})
        answer("GET", "/items/stats")
        answer("PATCH", f"/items/{item['id']}", json={"price": 2.0})
        more = hangs.connections - tried
        assert more == 0, (
            f"after a Redis timeout the app must skip Redis for a few seconds instead of "
            f"waiting for a timeout on every request (cache_retry_seconds): 4 more requests "
            f"opened {more} more connection(s) to the Redis that hangs"
        )
        # Redis answers again: once cache_retry_seconds have passed, the cache must be back.
        hangs.resume()
        deadline = time.monotonic() + RETRY + REDIS_BACK_GRACE
        caches: list[str] = []
        while time.monotonic() < deadline and "HIT" not in caches:
            time.sleep(0.1)
            r = slow.get(f"/items/{item['id']}")
            assert r.status_code == 200, f"GET /items/{{id}} must answer 200: {show(r)}"
            caches.append(r.headers.get("X-Cache", ""))
    assert "HIT" in caches, (
        f"after Redis failed, the app must try it again once cache_retry_seconds have passed "
        f"(the grader sets CACHE_RETRY_SECONDS={RETRY:g}), not turn the cache off until a "
        f"restart: Redis answered again, and {len(caches)} reads of the same item in the "
        f"next {RETRY + REDIS_BACK_GRACE:g} s were never a HIT"
    )


# --------------------------------------------------------------------------- 6. stampede


def stampede(base_url: str, requests: int = 50) -> list[httpx.Response]:
    """Send `requests` GET /items/stats at the same moment, each from its own connection."""
    barrier = threading.Barrier(requests)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=30) as own:
            own.get("/healthz")  # connect first, so that the requests start together
            barrier.wait()
            return own.get("/items/stats")

    with ThreadPoolExecutor(max_workers=requests) as pool:
        return list(pool.map(one, range(requests)))


@pytest.mark.points(12, task=TASK_STAMPEDE)
def test_concurrent_misses_compute_the_stats_once(
    base_url: str, redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    redis_client.delete(f"{redis_prefix}stats")
    before = computations(redis_client, redis_prefix)
    answers = stampede(base_url)
    bad = [r for r in answers if r.status_code != 200]
    assert not bad, f"all 50 concurrent GET /items/stats must answer 200: {show(bad[0])}"
    computed = computations(redis_client, redis_prefix) - before
    assert computed == 1, (
        f"50 concurrent misses on the stats must compute them once (one request takes a "
        f"Redis lock with SET NX PX, the others wait for its result); the counter "
        f"{redis_prefix}stats:computations grew by {computed}"
    )
    bodies = {r.text for r in answers}
    assert len(bodies) == 1, "all 50 requests must answer the same, once computed, stats"


@pytest.mark.hidden
@pytest.mark.points(3, task=TASK_STAMPEDE)
def test_stampede_after_a_write_also_computes_once(
    client: httpx.Client, base_url: str, redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    read(client, "/items/stats")
    create_item(client)  # invalidates the stats
    before = computations(redis_client, redis_prefix)
    answers = stampede(base_url, 30)
    assert all(r.status_code == 200 for r in answers), "every request must answer 200"
    computed = computations(redis_client, redis_prefix) - before
    assert computed == 1, f"after a write, 30 concurrent misses computed the stats {computed}x"


def lock_key_while_computing(
    held: HeldStats, redis_client: redis.Redis[bytes], redis_prefix: str
) -> bytes:
    """Start `held` and return the one key the app created meanwhile: the stampede lock."""
    redis_client.delete(f"{redis_prefix}stats")
    before = set(redis_client.scan_iter(match=f"{redis_prefix}*", count=1000))
    held.start()
    new = set(redis_client.scan_iter(match=f"{redis_prefix}*", count=1000)) - before
    new.discard(f"{redis_prefix}stats:computations".encode())
    if len(new) > 1:
        new = {k for k in new if b"lock" in k[len(redis_prefix) :]}
    assert len(new) == 1, (
        "while one request computes the stats, its stampede lock must be a Redis key under "
        f"REDIS_PREFIX (SET <prefix>lock:stats <token> NX PX {LOCK_MS}); the app created "
        f"{sorted(k.decode() for k in new) or 'no key'}"
    )
    return new.pop()


@pytest.mark.points(2, task=TASK_STAMPEDE)
def test_the_stampede_lock_expires(
    database_url: str,
    db: psycopg.Connection,
    base_url: str,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    with stats_on_hold(database_url, db, base_url) as held:
        lock = lock_key_while_computing(held, redis_client, redis_prefix)
        ttl = redis_client.pttl(lock)
        held.release()
    assert 0 < ttl <= LOCK_MS, (
        f"the stampede lock {lock.decode()} must expire after {LOCK_MS // 1000} s, in case its "
        f"holder dies (SET ... NX PX {LOCK_MS}: PX counts milliseconds); Redis says PTTL {ttl} "
        "ms (-1: it never expires)"
    )


@pytest.mark.points(3, task=TASK_STAMPEDE)
def test_the_lock_is_deleted_only_by_its_holder(
    database_url: str,
    db: psycopg.Connection,
    base_url: str,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    other = f"another request {uuid.uuid4().hex}".encode()
    with stats_on_hold(database_url, db, base_url) as held:
        lock = lock_key_while_computing(held, redis_client, redis_prefix)
        try:
            # As if the holder had been too slow: its lock expired and another request took it.
            redis_client.set(lock, other, px=LOCK_MS)
            held.release()
            now = redis_client.get(lock)
        finally:
            redis_client.delete(lock)
    assert now == other, (
        f"a request whose lock expired meanwhile must not delete the lock another request has "
        f"taken since: {lock.decode()} held {other.decode()!r}, after the first request "
        f"finished it holds {now!r}. Delete the lock only if it still holds your own token "
        "(GET and DEL in one Lua script)"
    )


@pytest.fixture(scope="module")
def twin_server(impl_dir: Path, app_env: dict[str, str]) -> Iterator[AppServer]:
    """A second process of the app on the same database and Redis (as `uvicorn --workers 2`)."""
    with AppServer(impl_dir, app_env) as server:
        yield server


@pytest.mark.points(3, task=TASK_STAMPEDE)
def test_the_lock_holds_across_processes(
    base_url: str,
    twin_server: AppServer,
    database_url: str,
    db: psycopg.Connection,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    redis_client.delete(f"{redis_prefix}stats")
    before = computations(redis_client, redis_prefix)
    urls = [base_url, twin_server.base_url] * 10
    barrier = threading.Barrier(len(urls))

    def one(url: str) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as own:
            own.get("/healthz")  # connect first, so that the requests start together
            barrier.wait()
            return own.get("/items/stats")

    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(len(urls)) as pool:
        # Hold the stats query until both processes have had their chance to start one.
        locker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        try:
            futures = [pool.submit(one, url) for url in urls]
            assert wait_for(lambda: lock_waiters(db) >= 1), "no request ran the stats query"
            wait_for(lambda: lock_waiters(db) >= 2, timeout=0.5)
        finally:
            locker.commit()
        answers = [f.result(timeout=30) for f in futures]
    bad = [r for r in answers if r.status_code != 200]
    assert not bad, f"every GET /items/stats must answer 200: {show(bad[0])}"
    computed = computations(redis_client, redis_prefix) - before
    assert computed == 1, (
        f"two processes of the app (as under `uvicorn --workers 2`) got 10 concurrent misses "
        f"each and computed the stats {computed} times: the stampede lock must be a Redis key "
        "(SET NX PX), which every process sees, not a lock inside one process"
    )
    assert len({r.text for r in answers}) == 1, "all requests must answer the same stats"
