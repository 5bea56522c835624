"""Regressions declared in a lab's conftest, and grading a deployment through --base-url."""

import json
from pathlib import Path

from shared.testing.server import AppServer
from tests.helpers import REPO_ROOT, grade, table_of

NEXT_LAB = REPO_ROOT / "tests" / "fixtures" / "labs" / "lab10_demo"


def test_regression_re_runs_the_earlier_labs_contract_on_this_lab(tmp_path: Path):
    proc, data = grade(NEXT_LAB / "tests", tmp_path)
    assert proc.returncode == 0, proc.stdout
    names = [t["name"] for t in data["tests"]]
    # lab09_demo's three points tests, graded as regressions, plus this lab's two.
    assert sum(n.startswith("Regression lab09_demo: ") for n in names) == 3, names
    assert "Regression lab09_demo: 1. Answer: test_answer_is_42" in names
    assert data["score"] == data["max_score"] == 6 + 2 + 4
    # The re-run tests ran against this lab's implementation, not lab09_demo's.
    _, starter = grade(NEXT_LAB / "tests", tmp_path, "--impl", str(NEXT_LAB / "starter"))
    failed = {t["name"] for t in starter["tests"] if t["status"] != "passed"}
    assert "Regression lab09_demo: 1. Answer: test_answer_is_42" in failed


def test_failures_with_one_cause_are_one_thing_to_fix(tmp_path: Path):
    proc, _ = grade(NEXT_LAB / "tests", tmp_path, "--impl", str(NEXT_LAB / "starter"))
    # The score table's "What to fix" section (pytest's own summary may follow its TOTAL line).
    fixes = proc.stdout.split("What to fix")[-1].split("TOTAL")[0]
    # test_answer_is_42 (re-run) and test_answer_is_still_42 fail with the same message.
    assert fixes.count("GET /answer must return 42, got TODO") == 1, fixes
    assert "2 tests, 5 points" in fixes
    table = table_of(proc.stdout)
    assert all(len(line) <= 100 for line in table.splitlines()), "the table fits 100 columns"


def test_a_test_that_needs_the_database_is_not_gradable_through_base_url(tmp_path: Path):
    with AppServer(NEXT_LAB / "solution") as server:
        proc, data = grade(NEXT_LAB / "tests", tmp_path, "--base-url", server.base_url,
                           env={"CI": "true"})  # fmt: skip
    # Left out of the maximum, visibly: not a loss of points, and not a CI skip failure.
    assert proc.returncode == 0, proc.stdout
    assert data["score"] == data["max_score"] == 8
    assert data["extra_data"]["points_left_out"] == 4
    entry = next(t for t in data["tests"] if t["name"].endswith("test_database_answers"))
    assert entry["max_score"] == 0 and entry["extra_data"]["points_left_out"] == 4
    assert "not gradable through --base-url" in entry["output"]
    assert "--database-url" in entry["output"]
    table = table_of(proc.stdout)
    line = next(ln for ln in table.splitlines() if "test_database_answers" in ln)
    assert "0/4" in line and "N/A" in line
    assert "Not gradable through --base-url: 1 test, 4 points" in table
    assert "TOTAL 8 / 8 points" in table


def test_with_database_url_the_deployments_database_is_used(tmp_path: Path, database_url: str):
    with AppServer(NEXT_LAB / "solution") as server:
        proc, data = grade(NEXT_LAB / "tests", tmp_path, "--base-url", server.base_url,
                           "--database-url", database_url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert data["score"] == data["max_score"] == 12
    assert "points_left_out" not in data["extra_data"]
    report = json.dumps(data)
    assert "not gradable" not in report
