"""Run a lab implementation as a real HTTP server in a child process.

Black-box grading talks to the implementation over HTTP, exactly as a browser or a load test
would. The child runs `python -m app` in the implementation folder, so it never shares imports
with the grader, and each submission runs with its own environment (database, Redis prefix).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.testing.process import Child, StartError, free_port, http_ok

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "AppServer",
    "ServerFailedToStart",
    "free_port",
    "impl_env",
    "migrate_impl",
    "run_in_impl",
]


class ServerFailedToStart(StartError):
    """The implementation did not answer on /healthz in time; the message has its log."""


def impl_env(impl_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child process that runs code from `impl_dir`."""
    env = dict(os.environ)
    # The implementation's own folder first (its `app` package), then the repo (`shared`).
    env["PYTHONPATH"] = os.pathsep.join([str(impl_dir), str(REPO_ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run_in_impl(
    impl_dir: Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` inside the implementation folder and capture its output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=impl_dir,
        env=impl_env(impl_dir, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class AppServer:
    """`python -m app` in `impl_dir`, listening on 127.0.0.1:<port>, with a start-up wait.

    `args` replaces `-m app` for a server started from a script (the lab benches do).
    """

    def __init__(
        self,
        impl_dir: Path,
        env: dict[str, str] | None = None,
        *,
        health_path: str = "/healthz",
        start_timeout: float = 30,
        port: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.impl_dir = Path(impl_dir).resolve()
        self.extra_env = dict(env or {})
        self.health_path = health_path
        self.start_timeout = start_timeout
        self.port = port or free_port()
        fd, log = tempfile.mkstemp(prefix="hl-server-", suffix=".log")
        os.close(fd)
        args = args or ["-m", "app"]
        self.child = Child(
            f"`python {' '.join(args)}` in {self.impl_dir}",
            [sys.executable, *args],
            {},
            Path(log),
            cwd=self.impl_dir,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    @property
    def pid(self) -> int:
        return self.child.pid

    def log_tail(self, lines: int = 30) -> str:
        return self.child.log_tail(lines)

    def start(self) -> AppServer:
        listen = {"HOST": "127.0.0.1", "PORT": str(self.port)}
        self.child.env = impl_env(self.impl_dir, {**self.extra_env, **listen})
        self.child.start()
        try:
            self.child.wait_until(
                http_ok(self.base_url + self.health_path),
                timeout=self.start_timeout,
                what=f"answering {self.health_path}",
            )
        except StartError as exc:
            raise ServerFailedToStart(str(exc)) from None
        return self

    def stop(self) -> None:
        self.child.stop(timeout=10)

    def restart(self) -> AppServer:
        """Stop and start again on the same port (to prove that state survives a restart)."""
        self.stop()
        return self.start()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


def migrate_impl(impl_dir: Path, env: dict[str, str], hint: str = "") -> None:
    """Run the implementation's `alembic upgrade head`; fail the run with its output if it fails.

    Used by the database labs before their server starts, so a broken migration is reported as
    what it is instead of as a server that answers 500 to everything.
    """
    import pytest  # only test runs call this

    result = run_in_impl(impl_dir, ["-m", "alembic", "upgrade", "head"], env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        pytest.fail(
            f"`python -m alembic upgrade head` failed in {impl_dir.name}/, so the server has no "
            f"table to work with; fix the migrations first{hint}:\n{tail}",
            pytrace=False,
        )
