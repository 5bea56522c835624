"""Lab 7, task 1: a locustfile of realistic shop visitors.

The student's `load/locustfile.py` runs headless against the shop (20 users, 12 s, the normal
build). Every task of the handout must have made enough requests under its fixed name, none
may fail, the mix must follow the weights, users must think between requests, and the users
must be FastHttpUsers. The grader's probe (loadrun.py) records each request: the items opened
and ordered must be ones the users saw on a page, many different ones; and against the failing
build every error answer must count as a failure.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import psycopg
import pytest

from labs.lab07_load.tests.conftest import FAILURE_RATE, NORMAL_SECONDS, NORMAL_USERS
from labs.lab07_load.tests.loadrun import TASKS, WEIGHTS, LoadRun

TASK = "1. A locustfile of realistic users"

# At least this many requests per task in the normal run (the handout's weights and think
# time give several times more).
MIN_REQUESTS = {"browse": 40, "view_item": 20, "order": 5, "stats": 5}
WEIGHT_TOLERANCE = 0.10  # each task's share may be this far from its weight's share
# Requests per user per second: think time between(0.2, 0.8) gives about 2; no think time
# gives dozens; far more than 1 s of thinking makes grading runs too thin.
RATE_PER_USER = (0.5, 5.0)
# The median pause between a user's requests: between(0.2, 0.8) never pauses less than 0.2 s.
MIN_MEDIAN_PAUSE = 0.15
# People do not pause for the same time before every click: between(0.2, 0.8) puts the 10th
# and 90th percentiles of the pauses about 0.48 s apart, a constant one about 0 s.
MIN_PAUSE_SPREAD = 0.3

# Items opened and ordered: at least this share of the requests must name different items
# (a random item of a 20-item page: nearly all differ; one id for everybody: one).
MIN_DISTINCT = 0.5
ITEM_PATH = re.compile(r"/items/(\d+)")

NAMES = ", ".join(f"{method} {name}" for method, name in TASKS)


def _require_stats(run: LoadRun) -> None:
    if not run.stats_rows():
        pytest.fail(
            "the headless run wrote no reports/load_stats.csv, so its requests cannot be "
            f"counted (task 2: locust.conf's csv option). Exit code {run.exit_code}; "
            f"locust said:\n{run.tail()}",
            pytrace=False,
        )


@pytest.mark.points(16, task=TASK)
def test_every_task_runs_without_failures(normal_run: LoadRun) -> None:
    _require_stats(normal_run)
    counts = normal_run.counts()
    missing = [t for t, n in MIN_REQUESTS.items() if counts.get(t, (0, 0))[0] < n]
    seen = sorted(f"{r['Type']} {r['Name']}" for r in normal_run.stats_rows() if r["Type"])
    short = ", ".join(f"{t} ({counts.get(t, (0, 0))[0]} of {MIN_REQUESTS[t]})" for t in missing)
    assert not missing, (
        f"tasks with too few requests in {NORMAL_SECONDS} s of {NORMAL_USERS} users: {short}; "
        f"expected the request names {NAMES}, the report has {seen or 'none'}"
    )
    failed = {t: f for t, (_, f) in counts.items() if f}
    assert not failed, (
        f"requests failed against the normal build: {failed}; see "
        f"reports/load_failures.csv (a 422 means a wrong body, a 404 a wrong URL)"
    )


@pytest.mark.points(8, task=TASK)
def test_tasks_are_weighted_like_the_handout(normal_run: LoadRun) -> None:
    _require_stats(normal_run)
    counts = {task: n for task, (n, _) in normal_run.counts().items()}
    total = sum(counts.values())
    assert total, f"no requests under the names {NAMES}"
    weight_sum = sum(WEIGHTS.values())
    off = {}
    for task, weight in WEIGHTS.items():
        share, want = counts.get(task, 0) / total, weight / weight_sum
        if abs(share - want) > WEIGHT_TOLERANCE:
            off[task] = f"{share:.0%} (weight {weight}: about {want:.0%})"
    assert not off, (
        f"the mix of requests does not follow the weights browse 6, view_item 3, order 1, "
        f"stats 1: {off}"
    )


def _pauses(run: LoadRun) -> list[float]:
    """Seconds between the end of each request and the next one of the same user."""
    by_user: dict[int, list[tuple[float, float]]] = {}
    for r in run.requests():
        by_user.setdefault(r["user"], []).append((r["start"], r["start"] + r["ms"] / 1000))
    pauses = []
    for requests in by_user.values():
        requests.sort()
        pauses += [nxt[0] - end for (_, end), nxt in itertools.pairwise(requests)]
    return pauses


@pytest.mark.points(8, task=TASK)
def test_users_think_between_requests(normal_run: LoadRun) -> None:
    _require_stats(normal_run)
    # The pauses themselves first: unlike requests/s, a machine too busy to answer fast
    # cannot make them shorter than the think time.
    pauses = _pauses(normal_run)
    assert pauses, "the grader's probe recorded no two requests of one user"
    pause = statistics.median(pauses)
    assert pause >= MIN_MEDIAN_PAUSE, (
        f"a user's requests follow each other after {pause * 1000:.0f} ms (median): set a "
        f"think time, wait_time = between(0.2, 0.8), so that a user behaves like a person"
    )
    deciles = statistics.quantiles(pauses, n=10)
    assert len(pauses) < 20 or deciles[-1] - deciles[0] >= MIN_PAUSE_SPREAD, (
        f"a user's pauses are all about the same ({deciles[0] * 1000:.0f} to "
        f"{deciles[-1] * 1000:.0f} ms from the 10th to the 90th percentile): a think time "
        f"varies, wait_time = between(0.2, 0.8), or the users click in step with each other"
    )
    row = normal_run.aggregated()
    assert row is not None, "reports/load_stats.csv has no Aggregated row"
    rate = float(row["Requests/s"]) / NORMAL_USERS
    low, high = RATE_PER_USER
    assert rate <= high, (
        f"each user made {rate:.1f} requests/s: set a think time, "
        f"wait_time = between(0.2, 0.8), so that a user behaves like a person"
    )
    assert rate >= low, (
        f"each user made only {rate:.2f} requests/s: the think time is too long for this "
        f"lab (the handout asks for between(0.2, 0.8))"
    )


# locust's own class, not one of that name: `class FastHttpUser(HttpUser)` is still requests.
INSPECT = """
import json, sys
from locust.contrib.fasthttp import FastHttpUser
from locust.util.load_locustfile import load_locustfile
users, shapes = load_locustfile(sys.argv[1])
print(json.dumps({name: issubclass(cls, FastHttpUser) for name, cls in users.items()}))
"""


@pytest.mark.points(8, task=TASK)
def test_users_are_fast_http_users(load_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", INSPECT, str(load_dir / "locustfile.py")],
        cwd=load_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"load/locustfile.py does not import:\n{proc.stderr[-1500:]}"
    users = json.loads(proc.stdout.strip().splitlines()[-1])
    assert users, "load/locustfile.py defines no User class"
    slow = [name for name, fast in users.items() if not fast]
    assert not slow, (
        f"{', '.join(slow)} should subclass locust's FastHttpUser (geventhttpclient), not "
        f"HttpUser (requests): it costs locust several times less CPU per request"
    )


def _page_ids(database_url: str, offsets: set[int]) -> set[int]:
    """The ids of the items on the pages GET /items?limit=20&offset=<o> showed (id order)."""
    ids: set[int] = set()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for offset in offsets:
            rows = conn.execute("SELECT id FROM items ORDER BY id LIMIT 20 OFFSET %s", (offset,))
            ids.update(int(row[0]) for row in rows)
    return ids


@pytest.mark.points(8, task=TASK)
def test_users_open_and_order_items_they_saw(normal_run: LoadRun, database_url: str) -> None:
    _require_stats(normal_run)
    requests = normal_run.requests()
    assert requests, "the grader's probe recorded no request of the normal run"
    offsets = set()
    for r in requests:
        if r["name"] == "/items" and (offset := parse_qs(r["query"]).get("offset")):
            offsets.add(int(offset[0]))
    seen = _page_ids(database_url, offsets)
    views = [int(m[1]) for r in requests if (m := ITEM_PATH.fullmatch(r["path"]))]
    assert views, "no GET /items/{id} request in the normal run"
    unseen = sorted(set(views) - seen)
    assert not unseen, (
        f"view_item opened items no page showed ({unseen[:5]}...): take the id from self.seen, "
        f"the items of the last page the user browsed"
    )
    assert len(set(views)) >= len(views) * MIN_DISTINCT, (
        f"{len(views)} GET /items/{{id}} requests opened only {len(set(views))} different "
        f"items: pick a random item of self.seen each time (with one item for everybody, the "
        f"cache answers every request, and the test measures a shop nobody visits)"
    )
    orders = normal_run.orders
    assert orders, "the normal run made no order (POST /orders)"
    ordered = [item_id for item_id, _ in orders]
    assert set(ordered) <= seen, (
        f"orders name items no page showed ({sorted(set(ordered) - seen)[:5]}...): order an "
        f"item of self.seen"
    )
    assert len(set(ordered)) >= len(ordered) * MIN_DISTINCT, (
        f"{len(ordered)} orders were for only {len(set(ordered))} different items: order a "
        f"random item of self.seen"
    )
    quantities = {quantity for _, quantity in orders}
    assert quantities <= {1, 2, 3}, (
        f"orders had the quantities {sorted(quantities)}: the handout asks for 1 to 3"
    )
    # Random quantities of 1 to 3: with 25 orders all three show but for a chance of 1e-4,
    # with 10 at least two but for 5e-5 (a run makes 30-50).
    if len(orders) >= 10:
        assert len(quantities) >= 2 and (len(orders) < 25 or quantities == {1, 2, 3}), (
            f"{len(orders)} orders had only the quantities {sorted(quantities)}: pick a random "
            f"quantity of 1 to 3 for each order (random.randint(1, 3))"
        )


@pytest.mark.points(6, task=TASK)
def test_an_error_answer_counts_as_failed(failing_run: LoadRun) -> None:
    requests = failing_run.requests()
    errors = [r for r in requests if (r["status"] or 0) >= 400]
    assert errors, (
        f"the failing build answers {FAILURE_RATE:.0%} of requests with 404 or 500, but the run "
        f"recorded none ({len(requests)} requests). Output ends:\n{failing_run.tail(8)}"
    )
    made = {(r["method"], r["name"]) for r in requests}
    absent = [f"{method} {name}" for method, name in TASKS if (method, name) not in made]
    assert not absent, (
        f"the run against the failing build made no {', '.join(absent)} request, so whether "
        f"their errors count as failed cannot be seen"
    )
    passed = Counter(f"{r['method']} {r['name']}" for r in errors if not r["failed"])
    assert not passed, (
        f"locust counted these error answers (the failing build's 404s and 500s) as successes: "
        f"{dict(passed)}. With catch_response=True, call response.failure() for any status "
        f"but the expected one (response.success() only for a good answer), or the SLO check "
        f"never sees the errors"
    )
