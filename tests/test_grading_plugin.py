"""The pytest plugin: points, score table, Gradescope JSON, CSV, hidden tests, CI skips."""

import csv
from pathlib import Path

from tests.helpers import DEMO_LAB, grade, run_pytest, table_of

GRADESCOPE_TEST_KEYS = {"name", "number", "score", "max_score", "status", "output", "visibility"}


def test_solution_gets_full_marks_and_valid_gradescope_json(tmp_path: Path):
    proc, data = grade(DEMO_LAB / "tests", tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert data["score"] == data["max_score"] == 6
    assert isinstance(data["execution_time"], float)
    assert len(data["tests"]) == 3, "tests without points are not graded entries"
    for entry in data["tests"]:
        assert set(entry) == GRADESCOPE_TEST_KEYS
        assert entry["status"] == "passed"
    assert "TOTAL 6 / 6 points" in proc.stdout


def test_starter_scores_zero_with_feedback_in_table(tmp_path: Path):
    proc, data = grade(DEMO_LAB / "tests", tmp_path, "--impl", str(DEMO_LAB / "starter"))
    assert proc.returncode == 1
    assert data["score"] == 2, "only the health task passes on the demo starter"
    failed = [t for t in data["tests"] if t["status"] == "failed"]
    assert any("GET /answer must return 42, got TODO" in t["output"] for t in failed)
    # The table names the task, the test, the points, and links it to what to fix.
    table = table_of(proc.stdout)
    line = next(ln for ln in table.splitlines() if "test_answer_is_42" in ln)
    assert "0/3" in line and "FAIL" in line and line.rstrip().endswith(" A")
    fixes = table.split("What to fix")[-1]
    assert "A GET /answer must return 42, got TODO" in fixes
    assert all(len(ln) <= 100 for ln in table.splitlines()), "the table fits 100 columns"


def test_hidden_tests_keep_their_name_and_feedback_hidden(tmp_path: Path):
    proc, data = grade(DEMO_LAB / "tests", tmp_path)
    hidden = [t for t in data["tests"] if t["visibility"] == "hidden"]
    assert len(hidden) == 1 and hidden[0]["name"].endswith("test_answer_is_a_number")
    assert "test_answer_is_a_number" not in proc.stdout.split("score:")[-1], "table hides it"


def test_grade_csv_appends_one_row_per_run(tmp_path: Path):
    sheet = tmp_path / "scores.csv"
    for _ in range(2):
        grade(DEMO_LAB / "tests", tmp_path, "--grade-csv", str(sheet))
    with sheet.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    assert rows[0]["lab"] == "lab09_demo" and rows[0]["score"] == "6"


def test_base_url_grades_a_running_server(tmp_path: Path):
    from shared.testing.server import AppServer

    with AppServer(DEMO_LAB / "solution", {"ANSWER": "41"}) as server:
        _, data = grade(DEMO_LAB / "tests", tmp_path, "--base-url", server.base_url)
    assert data["score"] == 3, "the server answers 41, so only the health and hidden tests pass"


def test_with_ci_true_a_skipped_test_fails_the_run(tmp_path: Path):
    test_file = tmp_path / "test_skip.py"
    test_file.write_text("import pytest\n\ndef test_skipped():\n    pytest.skip('no binary')\n")
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    def run(ci: str) -> subprocess.CompletedProcess[str]:
        config = str(REPO_ROOT / "pyproject.toml")  # the file lives outside the repo
        cmd = [sys.executable, "-m", "pytest", "-c", config, str(test_file)]
        return subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, env={"CI": ci, "PATH": "/usr/bin"}
        )

    assert run("false").returncode == 0
    ci_run = run("true")
    assert ci_run.returncode == 1 and "skipped tests count as failures" in ci_run.stdout


def test_collecting_only_prints_no_score_and_writes_no_results(tmp_path: Path):
    report = tmp_path / "results.json"
    proc = run_pytest(
        DEMO_LAB / "tests", "--impl", str(DEMO_LAB / "solution"), "--grade-json", str(report),
        "--collect-only",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "collected" in proc.stdout
    assert "TOTAL" not in proc.stdout, "nothing ran: a score of 0 would read as a grade"
    assert not report.exists()
