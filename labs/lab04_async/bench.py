"""What an event loop buys: the quote endpoint served sync (threads) and async (event loop).

    .venv/bin/python labs/lab04_async/bench.py [--seconds 20] [--users 200] [--latency-ms 1000]
        [--sync-impl labs/lab03_cache/solution] [--async-impl labs/lab04_async/solution]

The scenario is I/O-bound: GET /items/{id}/quote, whose work is two calls to the pricing
service that each take `--latency-ms`. The two services under test:

- sync: lab 3's service (`--sync-impl`) plus the same quote written the sync way
  (`bench/sync_quote.py`: a `def` route in FastAPI's thread pool, blocking httpx, the two
  calls one after the other);
- async: lab 4's service (`--async-impl`): `async def`, httpx.AsyncClient, asyncio.gather.

The script creates a scratch database (migrated with the async implementation's migrations,
the same schema as lab 3's) with 100 items, starts the pricing service with that latency,
then for each service: starts it, warms it up (every item read once, so items come from
Redis), and runs locust headless (FastHttpUser, `--users` users without think time) for
`--seconds` against 127.0.0.1. It prints requests/s, p50 and p99 of each, and the ratio.
Both services run as one process each, as `make serve` runs them. Everything it creates
(database, Redis keys, processes) is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

LAB_DIR = Path(__file__).resolve().parent
REPO_ROOT = LAB_DIR.parents[1]
sys.path.insert(0, str(REPO_ROOT))

from shared.labs import default_impl  # noqa: E402
from shared.services import ServiceUnavailable, require  # noqa: E402
from shared.settings import ServiceSettings  # noqa: E402
from shared.testing.namespaces import (  # noqa: E402
    delete_redis_prefix,
    new_run_id,
    temporary_database,
)
from shared.testing.server import AppServer, ServerFailedToStart, run_in_impl  # noqa: E402

ITEMS = 100
THREADS = 40  # the thread pool that runs FastAPI's `def` routes (anyio's default limiter)


@dataclass
class Result:
    label: str
    requests: int
    failures: int
    rps: float
    p50: float
    p99: float


@contextlib.contextmanager
def script_server(folder: Path, script: Path, env: dict[str, str]) -> Iterator[str]:
    """Run `python script` in `folder` (its `app` package importable); yield its base URL."""
    server = AppServer(folder, env, args=[str(script)], start_timeout=60)
    try:
        with server:
            yield server.base_url
    except ServerFailedToStart as exc:
        sys.exit(str(exc))


def warm_up(base_url: str) -> None:
    """Read every item once (into Redis) and open connections, so the run measures quotes."""

    def one(item_id: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            client.get(f"/items/{item_id}").raise_for_status()
            client.get(f"/items/{item_id}/quote").raise_for_status()

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(one, range(1, ITEMS + 1)))


def locust(label: str, base_url: str, users: int, seconds: float) -> Result:
    """Run locust headless against `base_url`; return its aggregated numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "stats"
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LAB_DIR / "bench" / "locustfile.py"),
            "--headless", "--only-summary", "--loglevel", "ERROR",
            "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
            "--host", base_url, "--csv", str(prefix),
        ]  # fmt: skip
        env = {**os.environ, "BENCH_ITEM_IDS": f"1-{ITEMS}"}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 60, env=env, check=False
        )
        stats = prefix.with_name("stats_stats.csv")
        if not stats.exists():
            sys.exit(f"locust wrote no statistics (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        with stats.open() as fh:
            row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    return Result(
        label=label,
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        rps=float(row["Requests/s"]),
        p50=float(row["50%"]),
        p99=float(row["99%"]),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20, help="length of each load run")
    # Defaults: a scenario dominated by waiting (a slow outside API, many clients), where the
    # I/O ceilings decide. With --latency-ms 50 on two shared cores, CPU decides instead.
    parser.add_argument("--users", type=int, default=200, help="locust users (in flight)")
    parser.add_argument("--latency-ms", type=int, default=1000, help="pricing latency per call")
    parser.add_argument(
        "--sync-impl", type=Path, default=default_impl(REPO_ROOT / "labs" / "lab03_cache")
    )
    parser.add_argument("--async-impl", type=Path, default=default_impl(LAB_DIR))
    args = parser.parse_args()
    settings = ServiceSettings()
    try:
        server_url = require("PostgreSQL", settings)
        redis_url = require("Redis", settings)
    except ServiceUnavailable as exc:
        sys.exit(str(exc))
    sync_impl, async_impl, run_id = (
        args.sync_impl.resolve(),
        args.async_impl.resolve(),
        new_run_id(),
    )
    prefixes = {"sync": f"hl_bench:{run_id}:sync:", "async": f"hl_bench:{run_id}:async:"}
    results: list[Result] = []
    with (
        temporary_database(server_url, run_id, "_bench") as url,
        AppServer(LAB_DIR / "pricing", {"LATENCY_MS": str(args.latency_ms)}) as pricing,
    ):
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "PRICING_URL": pricing.base_url,
            # Time-outs well above the latency: the bench measures waiting, not giving up.
            "PRICING_TIMEOUT": str(max(1.0, 4 * args.latency_ms / 1000)),
            "LOG_LEVEL": "warning",
        }
        result = run_in_impl(async_impl, ["-m", "alembic", "upgrade", "head"], env)
        if result.returncode != 0:
            sys.exit(f"migrations failed:\n{result.stdout}{result.stderr}")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO items (name, price, category) SELECT 'bench item ' || g, "
                "round((1 + g %% 50)::numeric, 2), 'bench' FROM generate_series(1, %s) AS g",
                (ITEMS,),
            )
        print(
            f"GET /items/{{id}}/quote: 2 pricing calls of {args.latency_ms} ms each; locust "
            f"FastHttpUser, {args.users} users, no think time, {args.seconds:g} s per service"
        )
        try:
            sync_env = {**env, "REDIS_PREFIX": prefixes["sync"]}
            script = LAB_DIR / "bench" / "sync_quote.py"
            with script_server(sync_impl, script, sync_env) as base_url:
                warm_up(base_url)
                results.append(
                    locust("sync  (def route, threads)", base_url, args.users, args.seconds)
                )
            async_env = {**env, "REDIS_PREFIX": prefixes["async"]}
            with AppServer(async_impl, async_env) as server:
                warm_up(server.base_url)
                results.append(
                    locust(
                        "async (async def, event loop)", server.base_url, args.users, args.seconds
                    )
                )
        finally:
            for prefix in prefixes.values():
                delete_redis_prefix(redis_url, prefix)
    row = "{:<31} {:>10} {:>8} {:>8} {:>9} {:>7}"
    print(row.format("service", "requests/s", "p50 ms", "p99 ms", "requests", "failed"))
    for r in results:
        print(
            row.format(
                r.label, f"{r.rps:.1f}", f"{r.p50:.0f}", f"{r.p99:.0f}", r.requests, r.failures
            )
        )
    sync, async_ = results
    ceiling_sync = min(args.users, THREADS) / (2 * args.latency_ms / 1000)
    ceiling_async = args.users / (args.latency_ms / 1000)
    print(
        f"I/O ceilings (no CPU cost): sync {min(args.users, THREADS)} threads / "
        f"{2 * args.latency_ms} ms = {ceiling_sync:.0f} requests/s; async {args.users} users / "
        f"{args.latency_ms} ms = {ceiling_async:.0f} requests/s"
    )
    ratio, p50_ratio = async_.rps / sync.rps, sync.p50 / async_.p50
    print(f"ratio async/sync: {ratio:.1f}x the requests/s, a {p50_ratio:.1f}x lower p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
