"""Start the capstone's API, worker and beat as child processes, with bounded start-up waits.

Development tooling, not production (containers and Kubernetes start each process on its own):
`make run`, the demo, the benchmark and the tests use it, so all of them start the service the
same way. The process handling itself is the course's one `shared.testing.process.Child`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from devtools.faults import Faults
from imgproc.config import VAR_DIR, Settings
from imgproc.migrate import prepare_storage, upgrade
from shared.services import ServiceUnavailable, ensure_database, require
from shared.settings import ServiceSettings
from shared.testing.process import Child, StartError, free_port, http_ok, running, wait_for

__all__ = [
    "Child",
    "Faults",
    "StartError",
    "checkout_isolated",
    "free_port",
    "running",
    "service_stack",
    "settings_env",
    "start_api",
    "start_flower",
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


def checkout_id(root: Path = REPO_ROOT) -> str:
    """A short id of this checkout (its absolute path), the same at every run."""
    return hashlib.sha256(str(root).encode()).hexdigest()[:8]


def checkout_isolated(settings: Settings, root: Path = REPO_ROOT) -> Settings:
    """`settings` in this checkout's own namespace, so that two checkouts on one machine
    (sharing PostgreSQL and Redis) never take each other's jobs: its own database
    (`imgproc_<id>` on the same server), Redis prefix (`<REDIS_PREFIX><id>:`, which also holds
    the broker's queue) and queue name (`<CELERY_QUEUE>-<id>`). The data directory is already
    the checkout's own (project/var/data) unless DATA_DIR says otherwise.
    """
    cid = checkout_id(root)
    db = urlsplit(settings.database_url)._replace(path=f"/imgproc_{cid}").geturl()
    return settings.model_copy(
        update={
            "database_url": db,
            "redis_prefix": f"{settings.redis_prefix}{cid}:",
            "celery_queue": f"{settings.celery_queue}-{cid}",
        }
    )


def port_error(port: int, what: str, host: str = "127.0.0.1") -> str | None:
    """None if `port` can be listened on, else a message naming the port and the bind error."""
    with socket.socket() as sock:
        # As uvicorn and Celery's metrics server bind: a port in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            return (
                f"port {port} ({what}) is already in use on {host}: {exc.strerror or exc}. "
                "Stop whatever holds it (another `make run`?) or choose another port in .env."
            )
    return None


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
    monitored: bool = False,
    node_name: str | None = None,
) -> list[str]:
    args = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        # INFO whatever LOG_LEVEL says: start_worker waits for Celery's INFO line "... ready.".
        "--loglevel", "INFO", "--pool", pool, "--concurrency", str(concurrency),
        # No broadcast traffic on a shared Redis; this worker needs none of it.
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if not monitored:
        # Flower (CELERY_MONITORING) shows a worker as online from its heartbeats.
        args.append("--without-heartbeat")
    if node_name is not None:
        args += ["--hostname", node_name]  # e.g. worker@host-a: how Celery names this node
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
    node_name: str | None = None,
) -> Child:
    """Start a worker and wait until it listens; `faults`: run the fault-injecting worker."""
    if settings.prometheus_multiproc_dir is not None:
        # Files of dead processes would add their old counts to the new worker's.
        settings.prometheus_multiproc_dir.mkdir(parents=True, exist_ok=True)
        for stale in settings.prometheus_multiproc_dir.glob("*.db"):
            stale.unlink()
    app = WORKER_APP if faults is None else FAULTS_APP
    args = worker_args(
        concurrency=concurrency,
        pool=pool,
        beat_schedule=beat_schedule,
        app=app,
        monitored=settings.celery_monitoring,
        node_name=node_name,
    )
    env = settings_env(settings, None if faults is None else faults.env())
    child = Child("worker", args, env, log_path, cwd=REPO_ROOT).start()
    # Celery logs "celery@<host> ready." once the consumer listens on the queue.
    return child.wait_until(lambda: " ready." in child.log_text(), timeout=timeout, what="ready")


def start_flower(settings: Settings, log_path: Path, *, port: int, timeout: float = 30) -> Child:
    """Flower on 127.0.0.1:`port`, watching the workers of `settings` (needs celery_monitoring)."""
    args = [
        sys.executable, "-m", "celery", "-A", WORKER_APP, "flower",
        f"--port={port}", "--address=127.0.0.1",
    ]  # fmt: skip
    env = settings_env(settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # Flower counts nothing of ours
    # Its HTTP API (/api/workers, /api/tasks) without a login: it listens on 127.0.0.1 only.
    env["FLOWER_UNAUTHENTICATED_API"] = "true"
    child = Child("flower", args, env, log_path, cwd=REPO_ROOT).start()
    healthy = http_ok(f"http://127.0.0.1:{port}/healthcheck", below=300)
    return child.wait_until(healthy, timeout=timeout, what="answering /healthcheck")


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
    settings: Settings,
    *,
    port: int,
    concurrency: int,
    separate_beat: bool,
    logs: Path,
    flower_port: int | None = None,
) -> Iterator[Stack]:
    """Migrate, start API + worker (+ beat, + Flower), yield, and stop them all however we
    leave. A port that is already taken stops it before anything starts (exit status 1)."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    wanted = {port: "the API"}
    if settings.worker_metrics_port:
        wanted[settings.worker_metrics_port] = "the worker's metrics"
    if flower_port is not None:
        wanted[flower_port] = "Flower"
    busy = [e for p, what in wanted.items() if (e := port_error(p, what)) is not None]
    if busy:
        sys.exit("\n".join(busy))
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
    prepare_storage(settings)
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
        if flower_port is not None:
            children.append(start_flower(settings, logs / "flower.log", port=flower_port))
        children.append(start_api(settings, logs / "api.log", port=port))
        yield Stack(settings, f"http://127.0.0.1:{port}", logs, children)
    except StartError as exc:
        sys.exit(str(exc))
    finally:
        for child in reversed(children):
            child.stop()
