"""What the cache buys: GET /items/stats on 100,000 rows, from PostgreSQL and from Redis.

    .venv/bin/python labs/lab03_cache/bench.py [--impl labs/lab03_cache/starter] [--seconds 5]

Creates a scratch database, migrates and seeds it (`python -m app.seed --rows 100000`), then
starts the implementation twice on it: once with CACHE_ENABLED=false (every request runs the
stats query) and once with the cache. For each it prints the median latency of sequential
requests and the requests per second of 8 concurrent clients, then the ratios. The scratch
database and the run's Redis keys are removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from shared.labs import default_impl  # noqa: E402
from shared.services import ServiceUnavailable, require  # noqa: E402
from shared.settings import ServiceSettings  # noqa: E402
from shared.testing.namespaces import (  # noqa: E402
    delete_redis_prefix,
    new_run_id,
    temporary_database,
)
from shared.testing.server import AppServer, run_in_impl  # noqa: E402

URL = "/items/stats"


def p50_ms(client: httpx.Client, requests: int) -> float:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get(URL).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def throughput(base_url: str, seconds: float, clients: int = 8) -> float:
    """Requests per second that `clients` threads get through in `seconds`."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while time.monotonic() < stop:
                client.get(URL).raise_for_status()
                done[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def measure(impl: Path, env: dict[str, str], label: str, seconds: float) -> tuple[float, float]:
    with AppServer(impl, env) as server, httpx.Client(base_url=server.base_url) as client:
        first = client.get(URL)
        first.raise_for_status()
        cache = first.headers.get("X-Cache", "-")
        p50_ms(client, 3)  # warm up connections and PostgreSQL's buffers
        p50 = p50_ms(client, 30 if env.get("CACHE_ENABLED") == "false" else 300)
        rps = throughput(server.base_url, seconds)
    print(f"{label:<9} p50 {p50:8.2f} ms   {rps:8.1f} requests/s   (first X-Cache: {cache})")
    return p50, rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # The reference solution if present (not in the student release), else the starter.
    default = default_impl(Path(__file__).resolve().parent)
    parser.add_argument("--impl", type=Path, default=default, help="implementation folder")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    args = parser.parse_args()
    settings = ServiceSettings()
    try:
        server_url = require("PostgreSQL", settings)
        redis_url = require("Redis", settings)
    except ServiceUnavailable as exc:
        sys.exit(str(exc))
    impl, run_id = args.impl.resolve(), new_run_id()
    prefix = f"hl_bench:{run_id}:"
    with temporary_database(server_url, run_id, "_bench") as url:
        env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
        seed = ["-m", "app.seed", "--rows", str(args.rows)]
        for step in (["-m", "alembic", "upgrade", "head"], seed):
            result = run_in_impl(impl, step, env, timeout=300)
            if result.returncode != 0:
                sys.exit(f"`python {' '.join(step)}` failed:\n{result.stdout}{result.stderr}")
        print(result.stdout.strip())
        try:
            print(f"GET {URL} on {args.rows} rows; load: 8 clients for {args.seconds:g} s each")
            slow = measure(impl, {**env, "CACHE_ENABLED": "false"}, "uncached", args.seconds)
            fast = measure(impl, env, "cached", args.seconds)
        finally:
            delete_redis_prefix(redis_url, prefix)
    print(
        f"ratio     p50 {slow[0] / fast[0]:.1f}x faster, {fast[1] / slow[1]:.1f}x more requests/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
