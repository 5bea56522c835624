"""`make grade`: a class of lab 1 submissions graded into one gradebook."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

LAB1 = REPO_ROOT / "labs" / "lab01_rest"


@pytest.mark.needs_solution
def test_gradebook_gives_full_zero_and_partial_scores(tmp_path: Path):
    subs = tmp_path / "submissions"
    # alice hands in the reference solution, bob the untouched starter, carol a solution with
    # one bug, dave a correct solution but an edited copy of our tests.
    for student, source in [("alice", "solution"), ("bob", "starter"), ("carol", "solution"),
                            ("dave", "solution")]:  # fmt: skip
        shutil.copytree(LAB1 / source, subs / student / "lab01_rest" / "starter",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copytree(LAB1 / "tests", subs / student / "lab01_rest" / "tests",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    routes = subs / "carol" / "lab01_rest" / "starter" / "app" / "api" / "routes" / "items.py"
    text = routes.read_text()
    bug = ("status_code=status.HTTP_201_CREATED", "status_code=status.HTTP_200_OK")
    assert bug[0] in text, "the bug below needs the 201 of POST /items"
    routes.write_text(text.replace(*bug, 1))
    for test_file in (subs / "dave" / "lab01_rest" / "tests").glob("test_*.py"):
        test_file.write_text(test_file.read_text() + "\n# edited by the student\n")

    out = tmp_path / "grades"
    proc = subprocess.run(
        [sys.executable, "-m", "shared.grading.gradebook", str(subs), "--labs", "1",
         "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with (out / "gradebook.csv").open() as fh:
        rows = {row["student"]: row for row in csv.DictReader(fh)}
    full = float(rows["alice"]["max"])
    assert full > 0
    assert float(rows["alice"]["lab01_rest"]) == full
    assert float(rows["bob"]["lab01_rest"]) == 0
    assert 0 < float(rows["carol"]["lab01_rest"]) < full
    assert float(rows["dave"]["lab01_rest"]) == full
    assert "tests differ" in rows["dave"]["notes"] and not rows["alice"]["notes"]
    assert "ships tests that differ" in proc.stderr
    results = json.loads((out / "carol" / "lab01_rest" / "results.json").read_text())
    assert results["score"] == float(rows["carol"]["total"])
    assert results["max_score"] == full and results["visibility"] == "visible"
    assert any(t["status"] == "failed" for t in results["tests"])
    combined = json.loads((out / "carol" / "results.json").read_text())
    assert combined["score"] == results["score"]

    # The class report: charts, pass rates, common causes, tampering, a row per student.
    page = (out / "report.html").read_text()
    for chart in ("charts/scores.png", "charts/tasks_lab01_rest.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart in page
    assert "href='carol/lab01_rest/results.json'" in page
    tampered = page.split("<h2>Tampered submissions</h2>")[1].split("<h2>")[0]
    assert "dave" in tampered and "alice" not in tampered
    causes = page.split("<h2>Most common causes of failure</h2>")[1].split("<h2>")[0]
    assert "POST /items" in causes, "carol's 200-instead-of-201 bug is among the causes"
    assert "time to grade one lab01_rest submission" in proc.stderr
