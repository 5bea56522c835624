"""Start the API, the worker and beat as child processes, with bounded start-up waits.

Used by `make run`, the demo, the benchmark and the tests, so all of them start the service the
same way. Every child gets its own process group, so stopping one ends its pool children too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from imgproc.config import VAR_DIR, Settings
from imgproc.migrate import migrate_storage, upgrade
from shared.services import ServiceUnavailable, ensure_database, require
from shared.settings import ServiceSettings

PROJECT_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PROJECT_DIR.parent


class StartError(RuntimeError):
    """A child did not become ready in time; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class Child:
    """One child process (group) writing its output to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait for `ready()`; on any failure (timeout, exit, Ctrl-C) stop the child first."""
        try:
            self._wait_until(ready, timeout=timeout, what=what)
        except BaseException:
            self.stop()
            raise

    def _wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StartError(
                    f"{self.name} exited with code {self.process.returncode} before {what}.\n"
                    f"Its log ({self.log_path}):\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise StartError(
            f"{self.name} did not get {what} within {timeout:.0f}s.\n"
            f"Its log ({self.log_path}):\n{self.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash or the OOM killer would."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group (Celery finishes its current job), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def start_api(settings: Settings, log_path: Path, *, port: int, timeout: float = 30) -> Child:
    args = [
        sys.executable, "-m", "uvicorn", "--factory", "imgproc.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    env = settings_env(settings)
    # One API process keeps its metrics in its own registry; multiprocess mode is the worker's.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    child = Child("api", args, env, log_path).start()

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    child.wait_until(healthy, timeout=timeout, what="answering /healthz")
    return child


def worker_args(
    *, concurrency: int = 1, pool: str = "prefork", beat_schedule: Path | None = None
) -> list[str]:
    args = [
        sys.executable, "-m", "celery", "-A", "imgproc.worker", "worker",
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
) -> Child:
    if settings.prometheus_multiproc_dir is not None:
        # Files of dead processes would add their old counts to the new worker's.
        settings.prometheus_multiproc_dir.mkdir(parents=True, exist_ok=True)
        for stale in settings.prometheus_multiproc_dir.glob("*.db"):
            stale.unlink()
    args = worker_args(concurrency=concurrency, pool=pool, beat_schedule=beat_schedule)
    child = Child("worker", args, settings_env(settings), log_path).start()
    # Celery logs "celery@<host> ready." once the consumer listens on the queue.
    child.wait_until(lambda: " ready." in child.log_text(), timeout=timeout, what="ready")
    return child


@contextlib.contextmanager
def running(*children: Callable[[], Child]) -> Iterator[list[Child]]:
    """Start children in order and stop them all (in reverse) however the block ends."""
    started: list[Child] = []
    try:
        for start in children:
            started.append(start())
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def wait_for(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll `predicate` until it is true; raise TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


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
            beat = Child(
                "beat",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "imgproc.worker",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(beat_file),
                ],
                settings_env(settings),
                logs / "beat.log",
            ).start()
            children.append(beat)
        children.append(start_api(settings, logs / "api.log", port=port))
        yield Stack(settings, f"http://127.0.0.1:{port}", logs, children)
    except StartError as exc:
        sys.exit(str(exc))
    finally:
        for child in reversed(children):
            child.stop()
