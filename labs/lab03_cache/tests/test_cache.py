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

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from labs.lab01_rest.tests.test_items_contract import create_item, expect_404, show
from shared.testing.server import AppServer

TASK_READS = "1. Cache-aside reads"
TASK_TTL = "2. A TTL on every key"
TASK_WRITES = "3. Writes invalidate what they change"
TASK_STATS = "4. Stats, cached"
TASK_DOWN = "5. Redis down: the API still answers"
TASK_STAMPEDE = "6. Stampede guard"

MAX_TTL = 86_400
CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


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


# --------------------------------------------------------------------------- 2. TTL


@pytest.mark.points(5, task=TASK_TTL)
def test_item_key_has_a_ttl(
    client: httpx.Client, redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    item = create_item(client)
    warm(client, f"/items/{item['id']}")
    ttl = redis_client.ttl(f"{redis_prefix}item:{item['id']}")
    assert 0 < ttl <= MAX_TTL, (
        f"the key {redis_prefix}item:{item['id']} must expire (SET ... EX seconds), with a TTL "
        f"of at most a day; Redis says TTL {ttl} (-1: no TTL, -2: no such key)"
    )


@pytest.mark.points(5, task=TASK_TTL)
def test_every_key_has_a_ttl(
    client: httpx.Client, redis_client: redis.Redis[bytes], redis_prefix: str
) -> None:
    item = create_item(client, category="ttl")
    warm(client, f"/items/{item['id']}")
    warm(client, "/items", category="ttl")
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
def test_writes_invalidate_lists_and_stats(client: httpx.Client) -> None:
    category = marker()
    first = create_item(client, category=category)
    warm(client, "/items", category=category)
    stats = warm(client, "/items/stats")
    second = create_item(client, category=category)
    page, cache = read(client, "/items", category=category)
    assert cache == "MISS" and [i["id"] for i in page] == [first["id"], second["id"]], (
        f"a POST must make cached list pages stale: GET /items?category=... must show the new "
        f"item at once, got X-Cache: {cache} and ids {[i['id'] for i in page]}"
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
    client: httpx.Client,
    db: psycopg.Connection,
    redis_client: redis.Redis[bytes],
    redis_prefix: str,
) -> None:
    redis_client.delete(f"{redis_prefix}stats")
    stats, cache = read(client, "/items/stats")
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
            assert got[category].get(field) == pytest.approx(value, abs=0.01), (
                f"stats of category {category!r}: `{field}` must be {value:.2f} "
                f"(percentiles: percentile_cont), got {got[category].get(field)}"
            )


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
    with httpx.Client(base_url=no_redis_server.base_url, timeout=10) as down:
        item = create_item(down, category="no-redis")
        for url, params in (
            (f"/items/{item['id']}", {}),
            ("/items", {"category": "no-redis"}),
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
    assert any("WARNING" in ln or "ERROR" in ln for ln in found), (
        "when Redis is unreachable the app must say so in its log: a WARNING line that "
        f"mentions the cache or Redis (logging.getLogger(__name__).warning(...)); the log "
        f"ends with:\n{no_redis_server.log_tail(8)}"
    )
    assert "Traceback" not in "\n".join(lines), (
        "a Redis outage is expected, not a crash: log one line, not a traceback"
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
