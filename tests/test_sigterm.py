"""A grading stopped with SIGTERM (a gradebook timeout, `kill`) cleans up after itself.

Real processes and a real database: lab 2's grading of its solution is started, and once its
server runs it gets SIGTERM. The server must be gone and the run's database dropped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from shared.grading.runner import REPO_ROOT

LAB = REPO_ROOT / "labs" / "lab02_db"


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def database_exists(url: str) -> bool:
    """Whether the database of `url` exists (asked through the server's `postgres` one)."""
    name = urlsplit(url).path.lstrip("/")
    admin = urlsplit(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def test_sigterm_stops_the_servers_and_drops_the_database():
    grading = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(LAB / "tests"), "--impl", str(LAB / "solution"),
         "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        server, database = None, None
        deadline = time.monotonic() + 120
        while server is None and time.monotonic() < deadline and grading.poll() is None:
            for pid in children_of(grading.pid):
                try:
                    env = environ_of(pid)
                except OSError:
                    continue
                if "DATABASE_URL" in env and "-m\0app" in Path(f"/proc/{pid}/cmdline").read_text():
                    server, database = pid, env["DATABASE_URL"]
            time.sleep(0.05)
        assert server is not None and database, "the grading never started its server"
        assert database_exists(database)

        os.kill(grading.pid, signal.SIGTERM)
        output, _ = grading.communicate(timeout=60)
    finally:
        if grading.poll() is None:  # the test failed early: stop it the clean way too
            grading.terminate()
            try:
                grading.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                grading.kill()
                grading.communicate()
    assert grading.returncode != 0, "an interrupted grading must not look like a pass"
    assert not alive(server), f"the server outlived the grading:\n{output[-2000:]}"
    assert not database_exists(database), f"the run's database {database} was left behind"


def test_a_grading_started_as_sigterm_arrives_is_stopped_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM between `grade`'s check of the stop flag and its registration of the new child:
    the handler's list of running gradings misses the child, so `grade` must stop it itself
    instead of letting a whole lab's grading run on after the command was told to stop."""
    import shared.grading.runner as runner

    real_popen = subprocess.Popen
    started: list[subprocess.Popen[str]] = []

    def popen_then_sigterm(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        runner._stopping.set()  # what the SIGTERM handler does first, in this window
        return proc

    # `runner` calls `subprocess.Popen` through the module: patch it there, for this test only.
    monkeypatch.setattr(subprocess, "Popen", popen_then_sigterm)
    try:
        began = time.monotonic()
        graded = runner.grade(LAB, LAB / "solution", timeout=120)
    finally:
        runner._stopping.clear()
    assert len(started) == 1, "grade() must start exactly one child"
    assert started[0].returncode is not None, "the child must have been stopped and reaped"
    assert graded.note == "not graded: stopped by SIGTERM", graded.note
    # Lab 2's full grading takes far longer; stopping it is SIGTERM plus its teardown.
    assert time.monotonic() - began < runner.TEARDOWN_GRACE + 10
