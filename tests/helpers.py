"""Run pytest on a lab the way `make lab-N` does, and read what the harness wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_LAB = REPO_ROOT / "tests" / "fixtures" / "labs" / "lab09_demo"


def run_pytest(
    tests: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest on `tests` in a process of its own, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tests), "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


def grade(
    tests: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "results.json"
    proc = run_pytest(tests, "--grade-json", str(report), *args, env=env)
    assert report.exists(), f"no results.json written:\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(report.read_text())


def table_of(stdout: str) -> str:
    """The score table at the end of a run's output: from its title line to its TOTAL line."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if "= score: " in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("TOTAL "))
    return "\n".join(lines[start : end + 1])
