"""What the index buys: the filter query on 100,000 rows, without and with the index.

    .venv/bin/python labs/lab02_db/bench.py [--impl labs/lab02_db/starter] [--rows 100000]

Creates a scratch database, runs the implementation's first migration, seeds it with
`python -m app.seed`, times the list's filter query (median of many runs), runs the second
migration (the index) and times the query again. Prints the plans and the ratio; the scratch
database is dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from shared.labs import default_impl  # noqa: E402
from shared.services import ServiceUnavailable, require  # noqa: E402
from shared.settings import ServiceSettings  # noqa: E402
from shared.testing.namespaces import new_run_id, temporary_database  # noqa: E402
from shared.testing.server import run_in_impl  # noqa: E402

# GET /items?category=books&min_price=100&max_price=120&sort=price, as the API runs it.
QUERY = (
    "SELECT id, name, price, description, category FROM items "
    "WHERE category = %s AND price >= %s AND price <= %s ORDER BY price, id LIMIT 20"
)
COUNT = "SELECT count(*) FROM items WHERE category = %s AND price >= %s AND price <= %s"
PARAMS = ("books", 100, 120)


def step(impl: Path, url: str, *args: str) -> str:
    result = run_in_impl(impl, list(args), {"DATABASE_URL": url}, timeout=300)
    if result.returncode != 0:
        sys.exit(f"`python {' '.join(args)}` failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def measure(conn: psycopg.Connection, runs: int) -> tuple[float, str]:
    """Median milliseconds of the query and of its count, and the plan's first lines."""
    for _ in range(3):  # warm the cache: we compare plans, not disk reads
        conn.execute(QUERY, PARAMS).fetchall()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(QUERY, PARAMS).fetchall()
        conn.execute(COUNT, PARAMS).fetchone()
        times.append((time.perf_counter() - started) * 1000)
    plan = conn.execute("EXPLAIN " + QUERY, PARAMS).fetchall()
    return statistics.median(times), "\n".join(f"      {row[0]}" for row in plan)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # The reference solution if present (not in the student release), else the starter.
    default = default_impl(Path(__file__).resolve().parent)
    parser.add_argument("--impl", type=Path, default=default, help="implementation folder")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per case")
    args = parser.parse_args()
    try:
        server = require("PostgreSQL", ServiceSettings())
    except ServiceUnavailable as exc:
        sys.exit(str(exc))
    impl = args.impl.resolve()
    with temporary_database(server, new_run_id(), "_bench") as url:
        step(impl, url, "-m", "alembic", "upgrade", "+1")
        print(step(impl, url, "-m", "app.seed", "--rows", str(args.rows)))
        with psycopg.connect(url, autocommit=True) as conn:
            matches = conn.execute(COUNT, PARAMS).fetchone()
            print(f"filter: category={PARAMS[0]!r}, price {PARAMS[1]}..{PARAMS[2]}: "
                  f"{matches[0] if matches else 0} of {args.rows} rows match")  # fmt: skip
            before, plan_before = measure(conn, args.runs)
            print(f"without the index: {before:8.2f} ms per page + count (median of {args.runs})")
            print(plan_before)
            step(impl, url, "-m", "alembic", "upgrade", "head")
            conn.execute("ANALYZE items")
            after, plan_after = measure(conn, args.runs)
            print(f"with the index:    {after:8.2f} ms per page + count (median of {args.runs})")
            print(plan_after)
    print(f"the index makes the filter query {before / after:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
