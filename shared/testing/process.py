"""Run a child process and wait until it is ready: the one way the course does it.

Lab servers under test (`AppServer`), the lab benches, and the capstone's launcher (`make run`,
`make demo`, its bench and tests) all start their children through `Child`:

- each child gets its own process group, so stopping it also ends its own children (uvicorn
  reloaders, Celery's pool processes);
- its output goes to a log file, whose tail is put into every error message;
- `wait_until` polls a readiness check, fails at once when the child exits, and stops the child
  on any failure (a timeout, an exit, Ctrl-C), so nothing is left running behind an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx


class StartError(RuntimeError):
    """A child exited or did not become ready in time; the message carries its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


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


_poller: httpx.Client | None = None


def _poll_client() -> httpx.Client:
    # One client for every readiness poll: each new httpx client loads the CA bundle (a
    # noticeable cost at 10 polls a second on a busy machine), and polls are plain http.
    global _poller
    if _poller is None:
        _poller = httpx.Client(timeout=1)
    return _poller


def http_ok(url: str, *, below: int = 500) -> Callable[[], bool]:
    """A readiness check: `url` answers with a status below `below`."""

    def ready() -> bool:
        try:
            return _poll_client().get(url).status_code < below
        except httpx.TransportError:
            return False

    return ready


class Child:
    """One child process (group) writing its output to a log file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends its children too
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> Child:
        """Wait for `ready()`; on any failure (timeout, exit, Ctrl-C) stop the child first."""
        try:
            self._wait_until(ready, timeout=timeout, what=what)
        except BaseException:
            self.stop()
            raise
        return self

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

    def signal(self, signum: int) -> None:
        """Send `signum` to the whole group (SIGSTOP/SIGCONT pause and resume it)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group, as a crash or the OOM killer would."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the group (servers and Celery finish what they do), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def running(*starters: Callable[[], Child]) -> Iterator[list[Child]]:
    """Start children in order and stop them all (in reverse) however the block ends."""
    started: list[Child] = []
    try:
        for start in starters:
            started.append(start())
        yield started
    finally:
        for child in reversed(started):
            child.stop()
