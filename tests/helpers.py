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


def grade(
    tests: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tests), "--grade-json", str(report),
         "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip
    assert report.exists(), f"no results.json written:\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(report.read_text())
