"""Run the student's locustfile headless, as a student would, and read what it wrote.

Each run happens in a fresh temporary folder (locust's working directory), with the student's
`load/locust.conf` and these options on the command line, which override the file's:
`-f <files> --host <url> [-u N -r N -t Ns]`. The grader's own SLO file is passed through
SLO_CONFIG, so the verdicts do not depend on the thresholds a student chose.

A run with `probe=True` also loads the grader's `probe.py` (one more `-f` file, no users):
it records every request locust counts (method, name, URL, status, counted as failed) to
`probe.jsonl` in the run's folder, which the reports cannot show (they group by name).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The handout fixes these: the request names of the four tasks, and where the reports go
# (relative to the folder locust runs in).
TASKS = {
    ("GET", "/items"): "browse",
    ("GET", "/items/{id}"): "view_item",
    ("POST", "/orders"): "order",
    ("GET", "/items/stats"): "stats",
}
WEIGHTS = {"browse": 6, "view_item": 3, "order": 1, "stats": 1}
REPORTS = {
    "stats": "reports/load_stats.csv",
    "history": "reports/load_stats_history.csv",
    "failures": "reports/load_failures.csv",
    "html": "reports/load.html",
}

PROBE = Path(__file__).with_name("probe.py")
PROBE_LOG = "probe.jsonl"

SLO_FAILED = re.compile(r"SLO failed: (\w+)")
STEP = re.compile(r"step (\d+): (\d+) users\b.*?\bp95 (\d+) ms.*?: (SLO met|SLO failed)")
SATURATION = re.compile(r"saturation at step (\d+) \((\d+) users\)")


@dataclass
class LoadRun:
    """One finished locust run: exit code, output, and the folder it ran in."""

    command: list[str]
    exit_code: int | None  # None: the grader stopped it at its time limit
    output: str
    folder: Path
    seconds_limit: float
    # (item_id, quantity) of the orders the run made, when the fixture looked them up
    orders: list[tuple[int, int]] = field(default_factory=list)
    _stats: list[dict[str, str]] | None = field(default=None, repr=False)

    def report(self, name: str) -> Path:
        return self.folder / REPORTS[name]

    def stats_rows(self) -> list[dict[str, str]]:
        """The rows of reports/load_stats.csv ([] if the file is missing)."""
        if self._stats is None:
            path = self.report("stats")
            if not path.is_file():
                return []
            with path.open(newline="") as fh:
                self._stats = list(csv.DictReader(fh))
        return self._stats

    def counts(self) -> dict[str, tuple[int, int]]:
        """Task name -> (requests, failures), from the stats CSV rows the handout names."""
        found: dict[str, tuple[int, int]] = {}
        for row in self.stats_rows():
            task = TASKS.get((row.get("Type", ""), row.get("Name", "")))
            if task:
                found[task] = (int(row["Request Count"]), int(row["Failure Count"]))
        return found

    def aggregated(self) -> dict[str, str] | None:
        return next((r for r in self.stats_rows() if r.get("Name") == "Aggregated"), None)

    def requests(self) -> list[dict[str, Any]]:
        """The probe's record of every request: method, name, path, query, status, failed."""
        path = self.folder / PROBE_LOG
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def failed_slos(self) -> set[str]:
        return set(SLO_FAILED.findall(self.output))

    def tail(self, lines: int = 25) -> str:
        """The output's last lines, after the warnings of code not written yet (TODO(lab 7)),
        which locust logs before its stats tables and would otherwise scroll out of view."""
        all_lines = self.output.strip().splitlines()
        last = all_lines[-lines:]
        todos = [ln for ln in dict.fromkeys(all_lines[:-lines]) if "TODO(lab" in ln]
        return "\n".join([*todos, *last])


def locust_cmd(load_dir: Path, files: list[str], host: str, extra: list[str]) -> list[str]:
    """`python -m locust` with the student's locust.conf, the locustfiles (paths) and `extra`."""
    cmd = [sys.executable, "-m", "locust"]
    config = load_dir / "locust.conf"
    if config.is_file():
        cmd += ["--config", str(config)]
    cmd += ["-f", ",".join(files), "--host", host]
    return cmd + extra


def run_locust(
    load_dir: Path,
    host: str,
    slo_config: Path,
    folder: Path,
    *,
    files: tuple[str, ...] = ("locustfile.py",),
    users: int | None = None,
    seconds: float | None = None,
    limit: float,
    env: dict[str, str] | None = None,
    probe: bool = False,
) -> LoadRun:
    """Run locust in `folder` until it ends by itself, or stop it after `limit` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(load_dir / f) for f in files]
    if probe:
        # A copy in the run's folder: the file's folder goes on locust's sys.path, and the
        # tests folder must not shadow a student's module.
        paths.append(str(shutil.copy(PROBE, folder / PROBE.name)))
    extra: list[str] = ["--headless"]
    if users is not None:
        extra += ["-u", str(users), "-r", str(users)]
    if seconds is not None:
        extra += ["-t", f"{seconds:g}s"]
    cmd = locust_cmd(load_dir, paths, host, extra)
    child_env = {**os.environ, "SLO_CONFIG": str(slo_config), "PYTHONUNBUFFERED": "1"}
    child_env["LAB7_PROBE_LOG"] = str(folder / PROBE_LOG)
    child_env.update(env or {})
    try:
        proc = subprocess.run(
            cmd,
            cwd=folder,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
        code: int | None = proc.returncode
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        output = _text(exc.stdout) + _text(exc.stderr)
    return LoadRun(cmd, code, output, folder, limit)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def write_slo(folder: Path, *, p95_ms: float, max_error_ratio: float, min_rps: float) -> Path:
    path = folder / f"slo-{p95_ms:g}-{max_error_ratio:g}-{min_rps:g}.toml"
    path.write_text(
        f"p95_ms = {p95_ms}\nmax_error_ratio = {max_error_ratio}\nmin_rps = {min_rps}\n"
    )
    return path
