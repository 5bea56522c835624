"""Lab 7 fixtures: the shop service under load, and the student's locustfile run against it.

The service is the implementation's own `app` (lab 5's shop, given in lab 7) with its
notifications consumer (`labs/lab07_load/stack.py`): migrated, seeded with the 100,000 items
the other labs grade on, its own Redis prefix and RabbitMQ names (`hl_test.<run id>.lab7.`),
all on 127.0.0.1. The student's code under test is `load/`: the locustfile, the SLO check,
the step shape and `locust.conf`.

Load stays bounded: the runs below use at most 20 users for 12 s, and the step shape runs
under a hard time limit. The verdicts use the grader's SLO file (SLO_CONFIG), not the
student's thresholds.

Runs made once and shared by several tests (session fixtures):

- `normal_run`: the locustfile, 20 users, 12 s, against the normal build;
- `slowed_run`: 10 users, 8 s, against a build that waits SLOWED_MS before every answer;
- `failing_run`: 10 users, 6 s, against a build that fails FAILURE_RATE of the requests
  (these two run at the same time, on two APIs started in the background while the first
  API starts: see `degraded_builds`);
- `shape_run`: the locustfile with `shape.py`, steps of SHAPE_STEP_USERS users every
  SHAPE_STEP_SECONDS (at most SHAPE_MAX_STEPS), until the shape ends it, against a capped
  build (`CAPACITY_RPS`, see `capped_server`): its knee is at step 2 or 3 on any machine.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psycopg
import pytest

from labs.lab07_load.stack import service
from labs.lab07_load.tests.loadrun import LoadRun, run_locust, write_slo
from shared.testing.http import http_client, not_gradable
from shared.testing.seed import seed_items
from shared.testing.server import AppServer, migrate_impl

# The earlier labs whose contract this lab re-runs on the shop it load-tests (lab 5's
# orders need fixtures of lab 5's own grader; its service is lab 5's solution unchanged).
REGRESSION = ("lab01_rest", "lab02_db", "lab03_cache")
# The verdicts judge latency (p95 bounds, "step 1 does not saturate"): the self-check and
# `make grade` grade this lab with nothing else running beside it (shared.grading.selfcheck).
GRADE_ALONE = True

# The grader's SLO for the normal, slowed and failing runs: loose enough that the normal
# build meets it on a busy machine, tight enough that SLOWED_MS breaks it for every request.
SLO_P95_MS = 1000
SLO_ERRORS = 0.01
SLO_MIN_RPS = 2
SLOWED_MS = 2000
FAILURE_RATE = 0.3
IMPOSSIBLE_RPS = 100_000  # the failing run also checks that min_rps can fail

CHECKS = Path(__file__).with_name("checks.py")
CHECKS_LIMIT = 90

NORMAL_USERS, NORMAL_SECONDS = 20, 12
DEGRADED_USERS, DEGRADED_SECONDS = 10, 6
# The slowed run is longer, and its throughput floor lower: each of its users makes one
# request per SLOWED_MS + think time at best, so 6 s and 2 requests/s left a loaded machine
# (first answers after 3-6 s) with too few requests, and "min_rps" (or no request at all)
# was missed besides p95_ms, the one objective the test wants missed.
SLOWED_SECONDS, SLOWED_MIN_RPS = 8, 1

# The step shape: steps of NORMAL_USERS users every 4 s, at most 15 steps (300 users, 60 s).
# Step 1 is the normal run's load, which the machine has just shown it carries (that run's p95
# sets the bound below). With steps of 40 a slower VM saturated at step 1 itself: the normal
# run's p95 was 70 ms at 20 users, step 1's 280 ms at 40, and the solution failed. Its SLO's
# p95 bound is set from the normal run's p95 (see shape_slo): saturation is where latency
# leaves its light-load level, whatever the machine's speed today. The floor keeps a
# short, noisy first step on a busy machine from counting as saturation; past the knee the
# p95 grows by hundreds of ms per step, so the floor costs a step or two at most. (On a quiet
# machine the shop still answered 120 users at a p95 of 16 ms: 20-user steps and a 400 ms
# floor never saw it saturate.)
SHAPE_STEP_USERS = NORMAL_USERS
SHAPE_STEP_SECONDS = 4
SHAPE_MAX_STEPS = 15
SHAPE_P95_FACTOR = 3
SHAPE_P95_FLOOR_MS = 150
# The step load runs against a build that starts at most CAPACITY_RPS requests a second
# (app/degrade.py): SHAPE_CAPACITY_FACTOR x what step 1's users ask for at the normal run's
# pace. Step 1 then uses 70 % of it and meets the SLO; from step 2 on the users ask for more
# than it can start, and in a closed loop the wait settles at R = N / C - Z: 0.4 x a user's
# cycle at step 2 (about 0.2 s with the handout's think time), 1.1 x at step 3. So the knee
# is at step 2 or 3 whatever the machine. (Against the uncapped shop the knee moved with the
# machine's speed: a fast VM answered 600 users at a p95 of 10 ms, and the reference
# solution found no saturation at all.)
SHAPE_CAPACITY_FACTOR = 1.4
SHAPE_FALLBACK_CAPACITY_RPS = 100.0  # if the normal run measured no throughput


@pytest.fixture(scope="session")
def queue_prefix(run_id: str) -> str:
    return f"hl_test.{run_id}.lab7."


@pytest.fixture(scope="session")
def service_env(
    database_url: str, redis_url: str, redis_prefix: str, amqp_url: str, queue_prefix: str
) -> dict[str, str]:
    """The shop's settings on this run's namespaces (the database is not migrated yet)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "AMQP_URL": amqp_url,
        "QUEUE_PREFIX": queue_prefix,
        "LOG_LEVEL": "warning",
    }


@pytest.fixture(scope="session")
def migrated_env(impl_dir: Path, service_env: dict[str, str]) -> dict[str, str]:
    migrate_impl(impl_dir, service_env)
    return service_env


@pytest.fixture(scope="session")
def app_env(database_url: str, migrated_env: dict[str, str]) -> dict[str, str]:
    seed_items(database_url)
    return migrated_env


class Background:
    """Work started in a thread now and collected later: a degraded build's start, a check.

    The CPU of this machine is shared, so nothing started here may still run while a load run
    measures: `normal_run` waits for all of it first (`Background.settle`).
    """

    started: ClassVar[list[Background]] = []

    def __init__(self, what: str, work: Callable[[], Any]) -> None:
        self.what = what
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), name=what, daemon=True)
        Background.started.append(self)
        self.thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.result = work()
        except BaseException as exc:  # handed to the test that needs the result
            self.error = exc

    def get(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.result

    @classmethod
    def settle(cls) -> None:
        for job in cls.started:
            job.thread.join()


def _needs(request: pytest.FixtureRequest, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.fixture(scope="session", autouse=True)
def degraded_builds(
    request: pytest.FixtureRequest, impl_dir: Path
) -> Iterator[dict[str, Background]]:
    """The slowed and the failing build, started in the background at the very start of the
    session (in parallel with the migration, the seed and the first API: that is where the
    machine has a core to spare) if a selected test needs them; idle until their runs."""
    builds: dict[str, Background] = {}
    wanted = {"slowed": "slowed_run", "failing": "failing_run"}
    if request.config.getoption("base_url") or not any(
        _needs(request, fixture) for fixture in wanted.values()
    ):
        yield builds
        return
    service_env: dict[str, str] = request.getfixturevalue("service_env")
    servers = {name: AppServer(impl_dir, {**service_env, **DEGRADE[name]}) for name in wanted}
    for name, server in servers.items():
        builds[name] = Background(f"starting the {name} build", server.start)
    try:
        yield builds
    finally:
        Background.settle()
        for server in servers.values():
            server.stop()
            server.log_path.unlink(missing_ok=True)


def run_checks(load_folder: Path, scratch: Path) -> dict[str, Any]:
    """Run `checks.py` on the student's load/ (its own process: locust patches the stdlib)."""
    try:
        proc = subprocess.run(
            [sys.executable, str(CHECKS), str(load_folder), str(scratch)],
            cwd=scratch, capture_output=True, text=True, timeout=CHECKS_LIMIT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"crash": f"did not finish within {CHECKS_LIMIT} s (does tick() wait in a loop?)"}
    try:
        answers: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"crash": f"exited with {proc.returncode}:\n{proc.stderr[-1500:]}"}
    return answers


@pytest.fixture(scope="session", autouse=True)
def early_checks(
    request: pytest.FixtureRequest, impl_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Background | None:
    """Start `offline_checks` at the very start of the session, if a selected test needs it:
    it needs no service, so it runs while the database is migrated and seeded."""
    if not _needs(request, "offline_checks"):
        return None
    scratch = tmp_path_factory.mktemp("lab7-checks")
    checks = functools.partial(run_checks, impl_dir / "load", scratch)
    return Background("the offline checks", checks)


@pytest.fixture(scope="session")
def offline_checks(early_checks: Background | None, load_dir: Path) -> dict[str, Any]:
    """What `checks.py` found: evaluate() and check_run on made-up windows, tick() on a fake
    clock (see checks.py)."""
    assert early_checks is not None, "early_checks starts the checks of every test needing them"
    answers: dict[str, Any] = early_checks.get()
    if "crash" in answers:
        pytest.fail(f"load/slo.py or load/shape.py could not be checked: {answers['crash']}",
                    pytrace=False)  # fmt: skip
    return answers


@pytest.fixture(scope="session")
def app_server(
    request: pytest.FixtureRequest, impl_dir: Path, migrated_env: dict[str, str]
) -> Iterator[AppServer]:
    """The shop API with its notifications consumer (orders need the consumer's queue).

    They start while PostgreSQL inserts the seed rows (neither reads a table to start): the
    seed keeps the database busy, the starts keep Python busy, and this machine has two cores.
    """
    if request.config.getoption("base_url"):
        not_gradable("starts the service with its consumer and degraded builds of it")
    with contextlib.ExitStack() as stack:
        starting = Background(
            "starting the shop", lambda: stack.enter_context(service(impl_dir, migrated_env))
        )
        try:
            request.getfixturevalue("app_env")  # the seed rows
        finally:
            starting.thread.join()  # before the stack closes: nothing left half-started
        yield starting.get()


@pytest.fixture(scope="session")
def load_dir(impl_dir: Path) -> Path:
    folder = impl_dir / "load"
    if not (folder / "locustfile.py").is_file():
        pytest.fail(f"no {folder}/locustfile.py: the lab's code lives in load/", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab7-runs")


@pytest.fixture(scope="session")
def grader_slo(runs_dir: Path) -> Path:
    return write_slo(runs_dir, p95_ms=SLO_P95_MS, max_error_ratio=SLO_ERRORS, min_rps=SLO_MIN_RPS)


def warm_up(base_url: str) -> None:
    """Fill the caches and open connections, so a short run measures the steady state."""
    offsets = range(0, 1000, 20)

    def pages(client: httpx.Client, mine: range) -> None:
        for offset in mine:
            client.get("/items", params={"limit": 20, "offset": offset})

    with http_client(base_url, timeout=30) as client:
        client.get("/items/stats")
        # Four at a time: the warm-up is on the clock of every grading run.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: pages(client, offsets[k::4]), range(4)))


def last_order_id(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM orders").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="session")
def normal_run(
    load_dir: Path, app_server: AppServer, grader_slo: Path, runs_dir: Path, database_url: str
) -> LoadRun:
    warm_up(app_server.base_url)
    Background.settle()  # no server start or check may share the CPU with a measured run
    before = last_order_id(database_url)
    run = run_locust(
        load_dir, app_server.base_url, grader_slo, runs_dir / "normal",
        users=NORMAL_USERS, seconds=NORMAL_SECONDS, limit=NORMAL_SECONDS + 45, probe=True,
    )  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as conn:
        run.orders = [
            (int(item_id), int(quantity))
            for item_id, quantity in conn.execute(
                "SELECT item_id, quantity FROM orders WHERE id > %s", (before,)
            )
        ]
    return run


# The degraded builds' settings, on top of the normal ones.
DEGRADE = {
    "slowed": {"LATENCY_MS": str(SLOWED_MS)},
    "failing": {"FAILURE_RATE": str(FAILURE_RATE)},
}


@pytest.fixture(scope="session")
def degraded_runs(
    degraded_builds: dict[str, Background],
    normal_run: LoadRun,
    load_dir: Path,
    runs_dir: Path,
) -> dict[str, LoadRun]:
    """The slowed and the failing run, at the same time, each against its own degraded API
    (their orders reach the running consumer: same database, same RabbitMQ names).

    Together they load the machine less than the normal run alone (10 users each, half of
    the slowed run's time is its LATENCY_MS sleep), so running them side by side changes no
    verdict: the slowed build misses p95 by seconds, the failing one answers within ms.
    No warm-up: the normal run filled the shared caches, and a slowed build would take
    seconds per warm-up request.
    """
    slos = {
        "slowed": write_slo(
            runs_dir, p95_ms=SLO_P95_MS, max_error_ratio=SLO_ERRORS, min_rps=SLOWED_MIN_RPS
        ),
        "failing": write_slo(
            runs_dir, p95_ms=SLO_P95_MS, max_error_ratio=SLO_ERRORS, min_rps=IMPOSSIBLE_RPS
        ),
    }
    seconds = {"slowed": SLOWED_SECONDS, "failing": DEGRADED_SECONDS}
    jobs = {}
    for name, build in degraded_builds.items():
        server: AppServer = build.get()
        jobs[name] = Background(
            f"the {name} run",
            functools.partial(
                run_locust, load_dir, server.base_url, slos[name], runs_dir / name,
                users=DEGRADED_USERS, seconds=seconds[name], limit=seconds[name] + 45,
                probe=True,
            ),
        )  # fmt: skip
    runs = {name: job.get() for name, job in jobs.items()}
    for build in degraded_builds.values():
        build.get().stop()  # done: free the machine for the tests that follow
    return runs


@pytest.fixture(scope="session")
def slowed_run(degraded_runs: dict[str, LoadRun]) -> LoadRun:
    return degraded_runs["slowed"]


@pytest.fixture(scope="session")
def failing_run(degraded_runs: dict[str, LoadRun]) -> LoadRun:
    return degraded_runs["failing"]


@pytest.fixture(scope="session")
def shape_slo(normal_run: LoadRun, runs_dir: Path) -> Path:
    """The shape's SLO: p95 within SHAPE_P95_FACTOR x the normal run's p95 (at least the
    floor), errors within SLO_ERRORS. Throughput is not judged per step."""
    row = normal_run.aggregated()
    light_p95 = float(row["95%"]) if row and row.get("95%", "N/A") != "N/A" else 0.0
    p95 = max(SHAPE_P95_FLOOR_MS, SHAPE_P95_FACTOR * light_p95)
    return write_slo(runs_dir, p95_ms=p95, max_error_ratio=SLO_ERRORS, min_rps=0)


def shape_capacity(normal_run: LoadRun) -> float:
    """CAPACITY_RPS of the capped build: SHAPE_CAPACITY_FACTOR x step 1's demand."""
    row = normal_run.aggregated()
    try:
        per_user = float(row["Requests/s"]) / NORMAL_USERS if row else 0.0
    except (KeyError, ValueError):
        per_user = 0.0
    if per_user <= 0:
        return SHAPE_FALLBACK_CAPACITY_RPS
    return round(SHAPE_CAPACITY_FACTOR * per_user * SHAPE_STEP_USERS, 1)


@pytest.fixture(scope="session")
def capped_server(
    impl_dir: Path, migrated_env: dict[str, str], app_server: AppServer, normal_run: LoadRun
) -> Iterator[AppServer]:
    """The shop with a known capacity (`CAPACITY_RPS`), for the step load. Its orders reach
    the normal build's consumer (same database, same RabbitMQ names)."""
    env = {**migrated_env, "CAPACITY_RPS": str(shape_capacity(normal_run))}
    with AppServer(impl_dir, env) as server:
        yield server


@pytest.fixture(scope="session")
def shape_run(load_dir: Path, capped_server: AppServer, shape_slo: Path, runs_dir: Path) -> LoadRun:
    if not (load_dir / "shape.py").is_file():
        pytest.fail(f"no {load_dir}/shape.py (the step load shape)", pytrace=False)
    env = {
        "STEP_USERS": str(SHAPE_STEP_USERS),
        "STEP_SECONDS": str(SHAPE_STEP_SECONDS),
        "MAX_STEPS": str(SHAPE_MAX_STEPS),
    }
    limit = SHAPE_STEP_SECONDS * (SHAPE_MAX_STEPS + 1) + 30
    return run_locust(
        load_dir, capped_server.base_url, shape_slo, runs_dir / "shape",
        files=("locustfile.py", "shape.py"), limit=limit, env=env,
    )  # fmt: skip
