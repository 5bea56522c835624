"""The course's load summary: one scenario against every lab's service, side by side.

    make load-summary
    .venv/bin/python labs/lab07_load/summary.py [--seconds 20] [--users 32] [--labs 1 2 3 4 5]
        [--png build/load-summary.png]

For each lab (its `solution/`, or `starter/` in the student release) the script prepares what
the service needs (lab 1: 1,000 items through its API, in memory; labs 2 and later: a scratch
PostgreSQL database, migrated, with the 100,000 rows the graders use, and a Redis prefix of
its own; lab 5: its own RabbitMQ names and its notifications consumer, see `stack.py`),
starts the API as one process on a free port of 127.0.0.1, warms it up, and runs
`summary/locustfile.py` headless: `--users` FastHttpUsers without think time for
`--seconds`. Every lab gets the same requests (pages, items, new items); one more row runs
lab 5 with orders (through RabbitMQ) as the write instead of new items. It prints
requests/s, p50 and p95 per row and draws them into a PNG chart. Everything it creates
(databases, Redis keys, queues, processes) is removed at the end.
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

LAB_DIR = Path(__file__).resolve().parent
REPO_ROOT = LAB_DIR.parents[1]
sys.path.insert(0, str(REPO_ROOT))

from labs.lab07_load.stack import service  # noqa: E402
from shared.labs import default_impl  # noqa: E402
from shared.services import ServiceUnavailable, require  # noqa: E402
from shared.settings import ServiceSettings  # noqa: E402
from shared.testing.namespaces import (  # noqa: E402
    delete_redis_prefix,
    new_run_id,
    temporary_database,
)
from shared.testing.process import StartError  # noqa: E402
from shared.testing.seed import ROWS, seed_items  # noqa: E402
from shared.testing.server import run_in_impl  # noqa: E402

LOCUSTFILE = LAB_DIR / "summary" / "locustfile.py"
IN_MEMORY_ITEMS = 1_000
# What each lab adds, for the table and the chart.
LABELS = {
    1: "in memory",
    2: "PostgreSQL",
    3: "+ Redis cache",
    4: "async",
    5: "+ RabbitMQ",
}


@dataclass(frozen=True)
class Case:
    """One row: a lab, and what its users write."""

    lab: int
    orders: bool = False

    @property
    def label(self) -> str:
        if self.orders:
            return f"lab {self.lab}: POST /orders"
        return f"lab {self.lab}: {LABELS.get(self.lab, '')}"


@dataclass
class Result:
    label: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float


def lab_folder(number: int) -> Path | None:
    found = sorted((REPO_ROOT / "labs").glob(f"lab{number:02d}_*"))
    return found[0] if found else None


@contextlib.contextmanager
def prepared(
    number: int, impl: Path, urls: dict[str, str], run_id: str
) -> Iterator[dict[str, str]]:
    """Yield the environment lab `number`'s service runs with; clean up what it created."""
    env = {"LOG_LEVEL": "warning"}
    if number == 1:
        yield env
        return
    prefix = f"hl_summary:{run_id}:lab{number}:"
    env |= {
        "REDIS_URL": urls["redis"],
        "REDIS_PREFIX": prefix,
        "AMQP_URL": urls["amqp"],
        "QUEUE_PREFIX": f"hl_summary.{run_id}.lab{number}.",
    }
    try:
        with temporary_database(urls["postgres"], run_id, f"_summary{number}") as url:
            env["DATABASE_URL"] = url
            migrated = run_in_impl(impl, ["-m", "alembic", "upgrade", "head"], env)
            if migrated.returncode != 0:
                sys.exit(f"lab {number}: migrations failed:\n{migrated.stdout}{migrated.stderr}")
            seed_items(url)
            yield env
    finally:
        delete_redis_prefix(urls["redis"], prefix)


def fill_in_memory(base_url: str) -> None:
    """Lab 1 keeps items in memory: create them through its API."""

    def create(start: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for n in range(start, IN_MEMORY_ITEMS, 10):
                body = {"name": f"summary item {n}", "price": 1 + n % 50, "category": "summary"}
                client.post("/items", json=body).raise_for_status()

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(create, range(10)))


def warm_up(base_url: str) -> None:
    """Open connections and fill caches once, so the run measures the steady state."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for offset in range(0, 1000, 20):
            client.get("/items", params={"limit": 20, "offset": offset}).raise_for_status()


def run_locust(base_url: str, args: argparse.Namespace, orders: bool) -> dict[str, str]:
    """Run the scenario headless; return locust's Aggregated row."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "summary"
        cmd = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
            "--headless", "--only-summary", "--loglevel", "ERROR",
            "-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds:g}s",
            "--host", base_url, "--csv", str(prefix),
        ]  # fmt: skip
        env = {
            **os.environ,
            "SUMMARY_WRITE_WEIGHT": str(args.write_weight),
            "SUMMARY_WRITE": "orders" if orders else "items",
        }
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.seconds + 60, check=False,
            cwd=tmp, env=env,
        )  # fmt: skip
        stats = Path(f"{prefix}_stats.csv")
        if not stats.exists():
            sys.exit(f"locust wrote no statistics (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        with stats.open() as fh:
            return next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")


def measure(
    case: Case, urls: dict[str, str], run_id: str, args: argparse.Namespace
) -> Result | None:
    folder = lab_folder(case.lab)
    if folder is None:
        sys.exit(f"lab {case.lab} is not in this repository")
    impl = default_impl(folder)
    print(f"{case.label}: {impl.relative_to(REPO_ROOT)} ...", file=sys.stderr, flush=True)
    # Each row gets its own database and Redis prefix (a fresh start, as in `make serve`).
    try:
        with (
            prepared(case.lab, impl, urls, f"{run_id}{int(case.orders)}") as env,
            service(impl, env) as server,
        ):
            if case.lab == 1:
                fill_in_memory(server.base_url)
            warm_up(server.base_url)
            row = run_locust(server.base_url, args, case.orders)
    except (httpx.HTTPError, StartError) as exc:
        # A starter not finished yet (in the student release, the rows are your own code).
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{case.label}: skipped, {impl.name}/ does not serve the scenario: {first}")
        return None
    return Result(
        label=case.label,
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        rps=float(row["Requests/s"]),
        p50=float(row["50%"]),
        p95=float(row["95%"]),
    )


def draw(results: list[Result], path: Path, title: str) -> None:
    """Requests/s as bars, p50 and p95 as lines on a second axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.artist import Artist

    # The numbers go under the bars, where no line or point can cover them.
    labels = [f"{r.label.replace(': ', chr(10))}\n{r.rps:.0f} req/s" for r in results]
    positions = range(len(results))
    fig, rps_axis = plt.subplots(figsize=(9, 5.4), dpi=110)
    bars = rps_axis.bar(positions, [r.rps for r in results], color="#4c78a8", label="requests/s")
    rps_axis.set_ylabel("requests/s (bars)")
    rps_axis.set_xticks(list(positions), labels)
    rps_axis.set_ylim(0, max(r.rps for r in results) * 1.2)
    latency_axis = rps_axis.twinx()
    latency_axis.plot(positions, [r.p50 for r in results], "o-", color="#f58518", label="p50")
    latency_axis.plot(positions, [r.p95 for r in results], "s--", color="#e45756", label="p95")
    latency_axis.set_ylabel("latency, ms (lines)")
    latency_axis.set_ylim(0, max(r.p95 for r in results) * 1.2)
    handles: list[Artist | tuple[Artist, ...]] = [bars, *latency_axis.get_lines()]
    # Below the axes, where no bar or point can hide under it.
    rps_axis.legend(
        handles,
        ["requests/s", "p50", "p95"],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=3,
        frameon=False,
    )
    rps_axis.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20, help="length of each lab's run")
    parser.add_argument("--users", type=int, default=32, help="locust users (in flight)")
    parser.add_argument("--labs", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument(
        "--write-weight", type=int, default=1, help="weight of POST /items (0: reads only)"
    )
    parser.add_argument("--png", type=Path, default=REPO_ROOT / "build" / "load-summary.png")
    args = parser.parse_args()
    numbers = [n for n in args.labs if lab_folder(n) is not None]
    missing = sorted(set(args.labs) - set(numbers))
    if missing:
        print(f"not in this repository (skipped): labs {missing}", file=sys.stderr)
    settings = ServiceSettings()
    try:
        urls = {"postgres": require("PostgreSQL", settings), "redis": require("Redis", settings)}
        urls["amqp"] = require("RabbitMQ", settings) if 5 in numbers else settings.amqp_url
    except ServiceUnavailable as exc:
        sys.exit(str(exc))
    run_id = new_run_id()
    title = (
        f"GET /items page 6 : GET /items/{{id}} 3 : POST /items {args.write_weight}; "
        f"{args.users} users, "
        f"no think time, {args.seconds:g} s per lab, 127.0.0.1, {os.cpu_count()} CPUs"
    )
    print(title)
    cases = [Case(n) for n in numbers]
    if 5 in numbers and args.write_weight:
        cases.append(Case(5, orders=True))
        title += "\n(last row: POST /orders instead of POST /items)"
    results = [r for case in cases if (r := measure(case, urls, run_id, args)) is not None]
    if not results:
        sys.exit("no lab served the scenario")
    row = "{:<26} {:>10} {:>7} {:>7} {:>9} {:>7}"
    print(row.format("lab", "requests/s", "p50 ms", "p95 ms", "requests", "failed"))
    for r in results:
        print(
            row.format(
                r.label, f"{r.rps:.1f}", f"{r.p50:.0f}", f"{r.p95:.0f}", r.requests, r.failures
            )
        )
    print(f"(labs 2 and later: {ROWS:,} seeded rows; lab 1: {IN_MEMORY_ITEMS:,} items in memory)")
    draw(results, args.png, title)
    print(f"chart: {args.png}")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
