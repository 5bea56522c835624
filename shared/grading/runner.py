"""Grade one implementation of one lab in a child pytest process, and read its results.json.

The self-check, the known-bug variants and the class gradebook all grade this way: our tests
(never a submission's copy), a process of its own (so its own database, Redis prefix and
queue names, see `shared.testing.fixtures`), and a per-test timeout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# How long a grading may take to tear down (stop its servers, drop its database) after SIGTERM.
TEARDOWN_GRACE = 30.0

_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()
# Set by SIGTERM: the gradings still queued behind the running ones are not started.
_stopping = threading.Event()


@dataclass
class Graded:
    """What one grading run produced: results.json's content, or why there is none."""

    data: dict[str, Any] | None
    returncode: int
    seconds: float
    output: str = ""
    note: str = ""
    tests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        """CPU seconds of the run and its children, as the harness measured them (0: unknown)."""
        return float((self.data or {}).get("extra_data", {}).get("cpu_time", 0.0))

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def grade(
    lab: Path,
    impl: Path,
    *,
    timeout: float = 180,
    extra: tuple[str, ...] = (),
    total_timeout: float | None = None,
) -> Graded:
    """Run `lab`'s tests on `impl`; `timeout` is per test, `total_timeout` for the whole run."""
    started = time.monotonic()
    if _stopping.is_set():
        return Graded(None, -1, 0.0, "", "not graded: stopped by SIGTERM")
    with tempfile.TemporaryDirectory(prefix="hl-grade-") as tmp:
        report = Path(tmp) / "results.json"
        cmd = [
            sys.executable, "-m", "pytest", str(lab / "tests"), "--impl", str(impl),
            "--grade-json", str(report), f"--timeout={timeout:g}",
            "-q", "-p", "no:cacheprovider", "--no-header", "-rN", "--tb=line", *extra,
        ]  # fmt: skip
        note = ""
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with _running_lock:
            _running.add(proc)
        try:
            if _stopping.is_set():
                # SIGTERM came between the check above and the registration: the handler set
                # the flag before it listed the running gradings, so it may have missed this one.
                stdout, stderr = _stop(proc)
                code, note = -1, "not graded: stopped by SIGTERM"
            else:
                try:
                    stdout, stderr = proc.communicate(timeout=total_timeout or timeout * 40)
                    code = proc.returncode
                except subprocess.TimeoutExpired:
                    stdout, stderr = _stop(proc)
                    code, note = -1, "grading timed out"
        finally:
            with _running_lock:
                _running.discard(proc)
        output = _text(stdout) + _text(stderr)
        data = json.loads(report.read_text()) if report.exists() else None
    seconds = time.monotonic() - started
    if data is None and not note:
        note = "grading crashed (no results.json)"
    tests = list(data["tests"]) if data else []
    return Graded(data, code, seconds, output, note, tests)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM (the grading tears its fixtures down: servers, database), SIGKILL if it hangs."""
    proc.terminate()
    try:
        return proc.communicate(timeout=TEARDOWN_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def stop_all_on_sigterm() -> None:
    """In a command that grades (self-check, gradebook): on SIGTERM, stop every grading it
    runs the clean way, then exit. Call it from the main thread."""

    def stop_all(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _stopping.set()
        with _running_lock:
            procs = list(_running)
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + TEARDOWN_GRACE
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop_all)


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""
