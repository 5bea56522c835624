"""Each lab's handout states the points its tests really carry.

A student plans by the handout's tables ("Task 2 ... (26 points)", one row per test); a test
whose points changed in code but not in the handout makes the table lie, so they are compared
here with what pytest collects (the same markers the grading harness reads).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, run_pytest

LABS = sorted(p.parent.name for p in (REPO_ROOT / "labs").glob("lab*/README.md"))
_ROW = re.compile(r"^\| `(test_\w+)` \| (\d+(?:\.\d+)?) \|", re.MULTILINE)
_HIDDEN_ROW = re.compile(r"^\| hidden: [^|]+\| (\d+(?:\.\d+)?) \|", re.MULTILINE)
_TASK = re.compile(r"^### Task (\d+)\. .*?\((\d+) points", re.MULTILINE)
_TOTALS = re.compile(r"adds up to (\d+) and the instructor's to (\d+)")


def _collected(lab: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "points.json"
    tests = REPO_ROOT / "labs" / lab / "tests"
    proc = run_pytest(
        tests, "--collect-only", "-p", "tests.collect_points",
        env={"COLLECT_POINTS_JSON": str(out)},
    )  # fmt: skip
    assert out.exists(), f"collecting {lab} failed:\n{proc.stdout}\n{proc.stderr}"
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    assert rows, f"{lab}: no graded tests collected"
    return rows


@pytest.mark.parametrize("lab", LABS)
def test_handout_tables_match_the_tests_points(lab: str, tmp_path: Path) -> None:
    text = (REPO_ROOT / "labs" / lab / "README.md").read_text()
    rows = _collected(lab, tmp_path)
    own = [r for r in rows if not r["task"].startswith("Regression ")]
    named = {r["name"]: r["points"] for r in own if not r["hidden"]}
    table = {name: float(points) for name, points in _ROW.findall(text)}
    assert table == named, (
        f"labs/{lab}/README.md's test rows differ from the tests' points: "
        f"only in the handout {sorted(table.keys() - named.keys())}, "
        f"only in the tests {sorted(named.keys() - table.keys())}, "
        f"other points {sorted(n for n in table.keys() & named.keys() if table[n] != named[n])}"
    )
    if (REPO_ROOT / "labs" / lab / "solution").is_dir():  # the release drops hidden tests
        hidden = sorted(r["points"] for r in own if r["hidden"])
        assert sorted(float(p) for p in _HIDDEN_ROW.findall(text)) == hidden, (
            f"labs/{lab}/README.md's 'hidden:' rows should carry {hidden} points"
        )
    by_task: dict[int, float] = defaultdict(float)
    for r in own:
        by_task[int(r["task"].split(".", 1)[0])] += r["points"]
    headers = {int(n): float(p) for n, p in _TASK.findall(text)}
    assert headers == dict(by_task), (
        f"labs/{lab}/README.md's task headers say {headers} points; the tests carry {dict(by_task)}"
    )
    for local, full in _TOTALS.findall(text):
        total = sum(r["points"] for r in rows)
        shown = total - sum(r["points"] for r in rows if r["hidden"])
        if not (REPO_ROOT / "labs" / lab / "solution").is_dir():
            total = float(full)  # the release has no hidden tests to count
        assert (float(local), float(full)) == (shown, total), (
            f"labs/{lab}/README.md: 'adds up to {local} and the instructor's to {full}', "
            f"but the tests give {shown:g} without the hidden ones and {total:g} in all"
        )
