"""Run a lab implementation as a real HTTP server in a child process.

Black-box grading talks to the implementation over HTTP, exactly as a browser or a load test
would. The child runs `python -m app` in the implementation folder, so it never shares imports
with the grader, and each submission runs with its own environment (database, Redis prefix).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerFailedToStart(RuntimeError):
    """The implementation did not answer on /healthz in time; the message has its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    """`python -m app` in `impl_dir`, listening on 127.0.0.1:<port>, with a start-up wait."""

    def __init__(
        self,
        impl_dir: Path,
        env: dict[str, str] | None = None,
        *,
        health_path: str = "/healthz",
        start_timeout: float = 30,
    ) -> None:
        self.impl_dir = Path(impl_dir).resolve()
        self.extra_env = dict(env or {})
        self.health_path = health_path
        self.start_timeout = start_timeout
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # Closed in __exit__; the server's output goes here so a failure can show its tail.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="hl-server-", suffix=".log", delete=False
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> AppServer:
        listen = {"HOST": "127.0.0.1", "PORT": str(self.port)}
        env = impl_env(self.impl_dir, {**self.extra_env, **listen})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=self.impl_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so stop() can end the whole process group
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailedToStart(
                    f"`python -m app` in {self.impl_dir} exited with code "
                    f"{self.process.returncode} before answering. Its log:\n{self.log_tail()}"
                )
            try:
                response = httpx.get(self.base_url + self.health_path, timeout=1)
                if response.status_code < 500:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerFailedToStart(
            f"`python -m app` in {self.impl_dir} did not answer {self.health_path} within "
            f"{self.start_timeout:.0f}s. Its log:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> AppServer:
        """Stop and start again on the same port (to prove that state survives a restart)."""
        self.stop()
        return self.start()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()
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
