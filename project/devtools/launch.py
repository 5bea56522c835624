"""Start the capstone's API, worker and beat as child processes, with bounded start-up waits.

Development tooling, not production (containers and Kubernetes start each process on its own):
`make run`, the demo, the benchmark and the tests use it, so all of them start the service the
same way. The process handling itself is the course's one `shared.testing.process.Child`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from devtools.faults import Faults
from imgproc.config import VAR_DIR, Settings
from imgproc.migrate import migrate_storage, upgrade
from shared.services import ServiceUnavailable, ensure_database, require
from shared.settings import ServiceSettings
from shared.testing.process import Child, StartError, free_port, http_ok, running, wait_for

__all__ = [
    "Child",
    "Faults",
    "StartError",
    "free_port",
    "running",
    "service_stack",
    "settings_env",
    "start_api",
    "start_worker",
    "wait_for",
    "worker_args",
]

PROJECT_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PROJECT_DIR.parent
WORKER_APP = "imgproc.worker"  # the Celery app the worker runs
FAULTS_APP = "devtools.faulty_worker"  # the same with injected faults (tests)


def settings_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes a child build exactly `settings`."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            env.pop(name.upper(), None)
        else:
            env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_DIR), str(REPO_ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def start_api(settings: Settings, log_path: Path, *, port: int, timeout: float = 30) -> Child:
    args = [
        sys.executable, "-m", "uvicorn", "--factory", "imgproc.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    env = settings_env(settings)
    # One API process keeps its metrics in its own registry; multiprocess mode is the worker's.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    child = Child("api", args, env, log_path, cwd=REPO_ROOT).start()
    healthy = http_ok(f"http://127.0.0.1:{port}/healthz", below=300)
    return child.wait_until(healthy, timeout=timeout, what="answering /healthz")


def worker_args(
    *,
    concurrency: int = 1,
    pool: str = "prefork",
    beat_schedule: Path | None = None,
    app: str = WORKER_APP,
) -> list[str]:
    args = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        # INFO whatever LOG_LEVEL says: start_worker waits for Celery's INFO line "... ready.".
        "--loglevel", "INFO", "--pool", pool, "--concurrency", str(concurrency),
        # No broadcast traffic on a shared Redis; this worker needs none of it.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if beat_schedule is not None:
        # Embedded beat: fine for one worker (tests, demo); run `celery beat` once otherwise.
        args += ["--beat", "--schedule", str(beat_schedule)]
    return args


def start_worker(
    settings: Settings,
    log_path: Path,
    *,
    concurrency: int = 1,
    pool: str = "prefork",
    beat_schedule: Path | None = None,
    timeout: float = 30,
    faults: Faults | None = None,
) -> Child:
    """Start a worker and wait until it listens; `faults`: run the fault-injecting worker."""
    if settings.prometheus_multiproc_dir is not None:
        # Files of dead processes would add their old counts to the new worker's.
        settings.prometheus_multiproc_dir.mkdir(parents=True, exist_ok=True)
        for stale in settings.prometheus_multiproc_dir.glob("*.db"):
            stale.unlink()
    app = WORKER_APP if faults is None else FAULTS_APP
    args = worker_args(concurrency=concurrency, pool=pool, beat_schedule=beat_schedule, app=app)
    env = settings_env(settings, None if faults is None else faults.env())
    child = Child("worker", args, env, log_path, cwd=REPO_ROOT).start()
    # Celery logs "celery@<host> ready." once the consumer listens on the queue.
    return child.wait_until(lambda: " ready." in child.log_text(), timeout=timeout, what="ready")


@dataclass
class Stack:
    settings: Settings
    base_url: str
    logs: Path
    children: list[Child]


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # runs the `finally` blocks that stop the children


@contextlib.contextmanager
def service_stack(
    settings: Settings, *, port: int, concurrency: int, separate_beat: bool, logs: Path
) -> Iterator[Stack]:
    """Migrate, start API + worker (+ beat), yield, and stop them all however we leave."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        for name in ("PostgreSQL", "Redis"):
            require(name, ServiceSettings())
    except ServiceUnavailable as exc:
        sys.exit(f"{exc}\n(`make services` checks and starts them.)")
    if settings.prometheus_multiproc_dir is None:
        # Prefork children count jobs; multiprocess mode lets the main process serve their sum.
        settings = settings.model_copy(update={"prometheus_multiproc_dir": VAR_DIR / "prometheus"})
    ensure_database(settings.database_url)
    upgrade(settings.database_url)
    migrate_storage(settings.data_dir)
    logs.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    try:
        beat_file = VAR_DIR / "celerybeat-schedule"
        children.append(
            start_worker(
                settings,
                logs / "worker.log",
                concurrency=concurrency,
                beat_schedule=None if separate_beat else beat_file,
            )
        )
        if separate_beat:
            beat_args = [
                sys.executable, "-m", "celery", "-A", WORKER_APP, "beat",
                "--loglevel", "INFO", "--schedule", str(beat_file),
            ]  # fmt: skip
            beat = Child(
                "beat", beat_args, settings_env(settings), logs / "beat.log", cwd=REPO_ROOT
            )
            beat.start()
            children.append(beat)
        children.append(start_api(settings, logs / "api.log", port=port))
        yield Stack(settings, f"http://127.0.0.1:{port}", logs, children)
    except StartError as exc:
        sys.exit(str(exc))
    finally:
        for child in reversed(children):
            child.stop()
