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
- `slowed_run`: 10 users, 6 s, against a build that waits SLOWED_MS before every answer;
- `failing_run`: 10 users, 6 s, against a build that fails FAILURE_RATE of the requests;
- `shape_run`: the locustfile with `shape.py`, steps of SHAPE_STEP_USERS users every
  SHAPE_STEP_SECONDS (at most SHAPE_MAX_STEPS), against the normal build, until the shape
  ends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labs.lab07_load.stack import service
from labs.lab07_load.tests.loadrun import LoadRun, run_locust, write_slo
from shared.testing.http import not_gradable
from shared.testing.seed import seed_items
from shared.testing.server import AppServer, migrate_impl

# The earlier labs whose contract this lab re-runs on the shop it load-tests (lab 5's
# orders need fixtures of lab 5's own grader; its service is lab 5's solution unchanged).
REGRESSION = ("lab01_rest", "lab02_db", "lab03_cache")

# The grader's SLO for the normal, slowed and failing runs: loose enough that the normal
# build meets it on a busy machine, tight enough that SLOWED_MS breaks it for every request.
SLO_P95_MS = 1000
SLO_ERRORS = 0.01
SLO_MIN_RPS = 2
SLOWED_MS = 2000
FAILURE_RATE = 0.3
IMPOSSIBLE_RPS = 100_000  # the failing run also checks that min_rps can fail

NORMAL_USERS, NORMAL_SECONDS = 20, 12
DEGRADED_USERS, DEGRADED_SECONDS = 10, 6

# The step shape: steps of 40 users every 4 s, at most 15 steps (600 users, 60 s). Its SLO's
# p95 bound is set from the normal run's p95 (see shape_slo): saturation is where latency
# leaves its light-load level, whatever the machine's speed today. The floor keeps a
# short, noisy first step on a busy machine from counting as saturation; past the knee the
# p95 grows by hundreds of ms per step, so the floor costs a step or two at most. (On a quiet
# machine the shop still answered 120 users at a p95 of 16 ms: 20-user steps and a 400 ms
# floor never saw it saturate.)
SHAPE_STEP_USERS = 40
SHAPE_STEP_SECONDS = 4
SHAPE_MAX_STEPS = 15
SHAPE_P95_FACTOR = 3
SHAPE_P95_FLOOR_MS = 150


@pytest.fixture(scope="session")
def queue_prefix(run_id: str) -> str:
    return f"hl_test.{run_id}.lab7."


@pytest.fixture(scope="session")
def app_env(
    impl_dir: Path,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    amqp_url: str,
    queue_prefix: str,
) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "AMQP_URL": amqp_url,
        "QUEUE_PREFIX": queue_prefix,
        "LOG_LEVEL": "warning",
    }
    migrate_impl(impl_dir, env)
    seed_items(database_url)
    return env


@pytest.fixture(scope="session")
def app_server(
    request: pytest.FixtureRequest, impl_dir: Path, app_env: dict[str, str]
) -> Iterator[AppServer]:
    """The shop API with its notifications consumer (orders need the consumer's queue)."""
    if request.config.getoption("base_url"):
        not_gradable("starts the service with its consumer and degraded builds of it")
    with service(impl_dir, app_env) as server:
        yield server


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
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get("/items/stats")
        for offset in range(0, 1000, 20):
            client.get("/items", params={"limit": 20, "offset": offset})


@pytest.fixture(scope="session")
def normal_run(load_dir: Path, app_server: AppServer, grader_slo: Path, runs_dir: Path) -> LoadRun:
    warm_up(app_server.base_url)
    return run_locust(
        load_dir, app_server.base_url, grader_slo, runs_dir / "normal",
        users=NORMAL_USERS, seconds=NORMAL_SECONDS, limit=NORMAL_SECONDS + 45,
    )  # fmt: skip


def degraded_run(
    impl_dir: Path,
    app_env: dict[str, str],
    load_dir: Path,
    slo: Path,
    folder: Path,
    degrade: dict[str, str],
) -> LoadRun:
    """A run against a second API of the same implementation, degraded on purpose (its
    orders reach the running consumer: same database, same RabbitMQ names)."""
    # No warm-up here: the normal run filled the shared caches, and a slowed build would
    # take a second per warm-up request.
    with AppServer(impl_dir, {**app_env, **degrade}) as server:
        return run_locust(
            load_dir, server.base_url, slo, folder,
            users=DEGRADED_USERS, seconds=DEGRADED_SECONDS, limit=DEGRADED_SECONDS + 45,
        )  # fmt: skip


@pytest.fixture(scope="session")
def slowed_run(
    impl_dir: Path,
    app_env: dict[str, str],
    normal_run: LoadRun,
    load_dir: Path,
    grader_slo: Path,
    runs_dir: Path,
) -> LoadRun:
    degrade = {"LATENCY_MS": str(SLOWED_MS)}
    return degraded_run(impl_dir, app_env, load_dir, grader_slo, runs_dir / "slowed", degrade)


@pytest.fixture(scope="session")
def failing_run(
    impl_dir: Path,
    app_env: dict[str, str],
    normal_run: LoadRun,
    load_dir: Path,
    runs_dir: Path,
) -> LoadRun:
    slo = write_slo(runs_dir, p95_ms=SLO_P95_MS, max_error_ratio=SLO_ERRORS, min_rps=IMPOSSIBLE_RPS)
    degrade = {"FAILURE_RATE": str(FAILURE_RATE)}
    return degraded_run(impl_dir, app_env, load_dir, slo, runs_dir / "failing", degrade)


@pytest.fixture(scope="session")
def shape_slo(normal_run: LoadRun, runs_dir: Path) -> Path:
    """The shape's SLO: p95 within SHAPE_P95_FACTOR x the normal run's p95 (at least the
    floor), errors within SLO_ERRORS. Throughput is not judged per step."""
    row = normal_run.aggregated()
    light_p95 = float(row["95%"]) if row and row.get("95%", "N/A") != "N/A" else 0.0
    p95 = max(SHAPE_P95_FLOOR_MS, SHAPE_P95_FACTOR * light_p95)
    return write_slo(runs_dir, p95_ms=p95, max_error_ratio=SLO_ERRORS, min_rps=0)


@pytest.fixture(scope="session")
def shape_run(load_dir: Path, app_server: AppServer, shape_slo: Path, runs_dir: Path) -> LoadRun:
    if not (load_dir / "shape.py").is_file():
        pytest.fail(f"no {load_dir}/shape.py (the step load shape)", pytrace=False)
    env = {
        "STEP_USERS": str(SHAPE_STEP_USERS),
        "STEP_SECONDS": str(SHAPE_STEP_SECONDS),
        "MAX_STEPS": str(SHAPE_MAX_STEPS),
    }
    limit = SHAPE_STEP_SECONDS * (SHAPE_MAX_STEPS + 1) + 30
    return run_locust(
        load_dir, app_server.base_url, shape_slo, runs_dir / "shape",
        files=("locustfile.py", "shape.py"), limit=limit, env=env,
    )  # fmt: skip
