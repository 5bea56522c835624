"""Lab 4, task 1: nothing blocks the event loop.

An async server runs every request on one thread, the event loop. While a request waits for
the network (the pricing service, PostgreSQL, Redis) with `await`, the loop serves the others;
one blocking call (a sync client, `time.sleep`) stops them all. These tests make one request
wait on purpose (the pricing service holds it, or PostgreSQL makes it wait for a row lock)
and count what else the server answers in the meantime. No stopwatch: only order and counts.
"""

from __future__ import annotations

import ast
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from shared.testing.items import create_item, show
from shared.testing.pricing import PricingControl

TASK_ASYNC = "1. Nothing blocks the event loop"

FAST_REQUESTS = 10
MANY_QUOTES = 50  # more than the 40 threads that run a FastAPI app's `def` routes

# Calls that block the calling thread: inside `async def` they stop the whole event loop.
BLOCKING_CALLS = {
    "time.sleep": "await asyncio.sleep(...)",
    "httpx.Client": "httpx.AsyncClient",
    "httpx.get": "an httpx.AsyncClient",
    "httpx.post": "an httpx.AsyncClient",
    "httpx.put": "an httpx.AsyncClient",
    "httpx.patch": "an httpx.AsyncClient",
    "httpx.delete": "an httpx.AsyncClient",
    "httpx.request": "an httpx.AsyncClient",
    "httpx.stream": "an httpx.AsyncClient",
    "urllib.request.urlopen": "an httpx.AsyncClient",
    "requests.get": "an httpx.AsyncClient",
    "requests.post": "an httpx.AsyncClient",
    "create_engine": "sqlalchemy.ext.asyncio.create_async_engine",
    "sessionmaker": "sqlalchemy.ext.asyncio.async_sessionmaker",
    "redis.Redis": "redis.asyncio.Redis",
    "redis.StrictRedis": "redis.asyncio.Redis",
    "redis.client.Redis": "redis.asyncio.Redis",
    "redis.from_url": "redis.asyncio.from_url",
    "Redis.from_url": "redis.asyncio.Redis.from_url",
    "StrictRedis.from_url": "redis.asyncio.Redis.from_url",
}
BLOCKING_MODULES = {
    "requests": "httpx.AsyncClient",
    "psycopg": "asyncpg through SQLAlchemy",
    "psycopg2": "asyncpg through SQLAlchemy",
}
# Command-line tools that never run inside the server's event loop.
NOT_IN_THE_SERVER = {"seed.py", "__main__.py"}

ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "api_route"}


def sync_routes(source: str) -> list[str]:
    """Names of the `def` (not `async def`) functions decorated as routes (`@router.get`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            func = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(func, ast.Attribute) and func.attr in ROUTE_DECORATORS:
                found.append(node.name)
    return found


def blocking_uses(source: str) -> list[str]:
    """The blocking imports and calls in one module's source, each with what to use instead."""
    tree = ast.parse(source)
    imported: dict[str, str] = {}  # local name -> full dotted name
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                imported[local] = alias.name if alias.asname else local
                if (root := alias.name.split(".")[0]) in BLOCKING_MODULES:
                    found.append(f"import {alias.name} (use {BLOCKING_MODULES[root]})")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            if (root := node.module.split(".")[0]) in BLOCKING_MODULES:
                found.append(f"from {node.module} import ... (use {BLOCKING_MODULES[root]})")
    for node in ast.walk(tree):
        name = _dotted(node.func) if isinstance(node, ast.Call) else None
        if name is None:
            continue
        head, dot, rest = name.partition(".")
        full = imported.get(head, head) + dot + rest
        if full.startswith(("redis.asyncio.", "sqlalchemy.ext.asyncio.")):
            continue
        for bad, instead in BLOCKING_CALLS.items():
            if full == bad or full.endswith("." + bad):
                found.append(f"{name}(...) (use {instead})")
    return found


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


@pytest.mark.points(6, task=TASK_ASYNC)
def test_routes_are_async_and_use_async_clients(impl_dir: Path) -> None:
    sync, problems = [], []
    for path in sorted((impl_dir / "app").rglob("*.py")):
        if path.name in NOT_IN_THE_SERVER:
            continue
        source = path.read_text()
        sync += [f"{path.relative_to(impl_dir)}: {name}" for name in sync_routes(source)]
        problems += [f"{path.relative_to(impl_dir)}: {use}" for use in blocking_uses(source)]
    assert not sync, (
        "every route must be `async def` (a `def` route runs in a thread pool, not on the "
        f"event loop): {', '.join(sync)}"
    )
    assert not problems, "the server must not use blocking clients or calls: " + "; ".join(
        problems[:5]
    )


@pytest.mark.points(8, task=TASK_ASYNC)
def test_slow_pricing_call_does_not_stall_other_requests(
    client: httpx.Client, pricing: PricingControl
) -> None:
    slow = create_item(client)
    others = [create_item(client) for _ in range(3)]
    pricing.scenario(slow["id"], hold=True)
    url = f"{client.base_url}/items/{slow['id']}/quote"
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            held: Future[httpx.Response] = pool.submit(httpx.get, url, timeout=30)
            ok, stats = pricing.wait_until(slow["id"], lambda s: s["held"] >= 1)
            assert ok, (
                f"GET /items/{slow['id']}/quote never reached the pricing service: "
                f"{stats} (does the quote endpoint work yet?)"
            )
            # The quote now waits for the pricing service. Meanwhile, the rest must go on.
            for n in range(FAST_REQUESTS):
                other = others[n % len(others)]
                r = client.get(f"/items/{other['id']}", timeout=10)
                assert r.status_code == 200, f"GET /items/{{id}} must answer 200: {show(r)}"
            after = pricing.stats(slow["id"])
            assert not held.done() and after["price"]["attempts"] == 1, (
                f"{FAST_REQUESTS} quick requests were answered only after the held pricing call "
                f"had timed out ({after['price']['attempts']} attempts so far): a blocking "
                "call in an `async def` route stops the event loop; use httpx.AsyncClient "
                "and `await`"
            )
            pricing.release(slow["id"])
            r = held.result(timeout=30)
            assert r.status_code == 200, f"the released quote must answer 200: {show(r)}"
    finally:
        pricing.release(slow["id"])


@pytest.mark.points(8, task=TASK_ASYNC)
def test_waiting_for_a_row_lock_does_not_stall_other_requests(
    client: httpx.Client, database_url: str, db: psycopg.Connection
) -> None:
    locked = create_item(client, price=1.0)
    others = [create_item(client) for _ in range(3)]
    waiting_sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND state = 'active'"
    )
    with psycopg.connect(database_url) as locker, ThreadPoolExecutor(max_workers=1) as pool:
        # Our own transaction locks the row; the server's UPDATE must wait for it.
        locker.execute("SELECT id FROM items WHERE id = %s FOR UPDATE", (locked["id"],))
        url = f"{client.base_url}/items/{locked['id']}"
        patch: Future[httpx.Response] = pool.submit(
            httpx.patch, url, json={"price": 2.0}, timeout=30
        )
        try:
            waiting = _wait_for(lambda: _count(db, waiting_sql) >= 1 or patch.done())
            assert waiting and not patch.done(), (
                f"PATCH /items/{locked['id']} should wait for the row lock we hold, but "
                f"{'it answered: ' + show(patch.result()) if patch.done() else 'it never did'}"
            )
            for n in range(FAST_REQUESTS):
                other = others[n % len(others)]
                r = client.get(f"/items/{other['id']}", timeout=10)
                assert r.status_code == 200, f"GET /items/{{id}} must answer 200: {show(r)}"
            still_waiting = _count(db, waiting_sql) >= 1 and not patch.done()
            assert still_waiting, "the PATCH must still wait for our lock (nothing released it)"
        finally:
            locker.commit()  # release the lock: the PATCH goes on
        r = patch.result(timeout=30)
    assert r.status_code == 200 and r.json()["price"] == 2.0, (
        f"after the lock is released the PATCH must succeed: {show(r)}"
    )


@pytest.mark.points(8, task=TASK_ASYNC)
def test_more_quotes_in_flight_than_a_thread_pool_holds(
    client: httpx.Client, pricing: PricingControl, db: psycopg.Connection
) -> None:
    # Items nobody has read yet: each quote reads its item from PostgreSQL (a cache miss), so
    # a quote that keeps its database connection while it waits caps the quotes in flight
    # at the size of the database pool.
    rows = db.execute(
        "INSERT INTO items (name, price) SELECT %s || g, 1 FROM generate_series(1, %s) AS g "
        "RETURNING id",
        (f"in flight {uuid.uuid4().hex[:8]} ", MANY_QUOTES),
    ).fetchall()
    ids = [int(row[0]) for row in rows]
    for item_id in ids:
        pricing.scenario(item_id, hold=True)
    limits = httpx.Limits(max_connections=MANY_QUOTES)
    base = pricing.totals()["in_flight"]
    try:
        with (
            httpx.Client(base_url=client.base_url, timeout=30, limits=limits) as many,
            ThreadPoolExecutor(max_workers=MANY_QUOTES) as pool,
        ):
            futures = [pool.submit(many.get, f"/items/{i}/quote") for i in ids]

            def reached() -> int:
                """How many of the quotes wait at the pricing service (a call of each held)."""
                return sum(pricing.stats(i)["held"] > 0 for i in ids)

            # First the cheap total (two calls per quote), then each quote on its own. (All
            # answered without waiting at the service: no point waiting on.)
            _wait_for(
                lambda: (
                    pricing.totals()["in_flight"] - base >= MANY_QUOTES
                    or all(f.done() for f in futures)
                ),
                15,
            )
            _wait_for(lambda: reached() == MANY_QUOTES or all(f.done() for f in futures), 5)
            held = reached()
            if held < MANY_QUOTES:
                if held == 0:
                    # Nothing to say about concurrency: the route never called the service.
                    done = [f.result() for f in futures if f.done() and f.exception() is None]
                    answered = f"; one answered: {show(done[0])}" if done else ""
                    pytest.fail(
                        f"none of {MANY_QUOTES} quotes reached the pricing service: "
                        f"GET /items/{{id}}/quote must call it (the quote tests show why "
                        f"not){answered}",
                        pytrace=False,
                    )
                pytest.fail(
                    f"{MANY_QUOTES} quotes at once must all wait at the pricing service at "
                    f"once; only {held} of them reached it. A thread pool (`def` routes), a "
                    "database connection held during the call (`await session.close()` "
                    "first), or a small HTTP connection pool caps it",
                    pytrace=False,
                )
            # A bigger database pool lets them all through, but each waiting quote would still
            # keep a connection (and its transaction) that other requests need.
            idle = _count(db, IDLE_IN_TRANSACTION_SQL)
            assert idle < MANY_QUOTES // 10, (
                f"while {MANY_QUOTES} quotes waited for the pricing service, {idle} database "
                "connections sat 'idle in transaction': a quote must give its connection back "
                "(`await session.close()`) before it calls the pricing service"
            )
            for item_id in ids:
                pricing.release(item_id)
            answers: list[Any] = [f.result(timeout=30) for f in futures]
    finally:
        for item_id in ids:
            pricing.release(item_id)
    codes = sorted({r.status_code for r in answers})
    assert codes == [200], f"all {MANY_QUOTES} released quotes must answer 200, got {codes}"


IDLE_IN_TRANSACTION_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
)


def _count(db: psycopg.Connection, sql: str) -> int:
    row = db.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _wait_for(check: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return bool(check())


# Later labs star-import this module: export exactly the tests.
__all__ = [name for name in dict(globals()) if name.startswith("test_")]
