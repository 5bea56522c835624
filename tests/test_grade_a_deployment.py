"""The same running deployment graded twice in a row gets the same score (labs 1 and 2)."""

from pathlib import Path
from typing import Any

import pytest

from shared.testing.server import AppServer, run_in_impl
from tests.helpers import REPO_ROOT, grade

LABS = REPO_ROOT / "labs"


def _twice(tests: Path, tmp_path: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for run in ("1", "2"):
        (tmp_path / run).mkdir()
    first = grade(tests, tmp_path / "1", *args)[1]
    second = grade(tests, tmp_path / "2", *args)[1]
    return first, second


def _scores(data: dict[str, Any]) -> dict[str, float]:
    return {t["name"]: t["score"] for t in data["tests"]}


@pytest.mark.needs_solution
def test_lab1_deployment_graded_twice_gets_full_marks_twice(tmp_path: Path):
    with AppServer(LABS / "lab01_rest" / "solution") as server:
        first, second = _twice(
            LABS / "lab01_rest" / "tests", tmp_path, "--base-url", server.base_url
        )
    assert first["score"] == first["max_score"] > 0, [
        t for t in first["tests"] if t["status"] != "passed"
    ]
    assert _scores(second) == _scores(first), "a second grading of the same server must agree"


@pytest.mark.needs_solution
def test_lab2_deployment_with_its_database_graded_twice_agrees(tmp_path: Path, database_url: str):
    impl = LABS / "lab02_db" / "solution"
    env = {"DATABASE_URL": database_url}
    migrated = run_in_impl(impl, ["-m", "alembic", "upgrade", "head"], env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with AppServer(impl, env) as server:
        first, second = _twice(
            LABS / "lab02_db" / "tests", tmp_path,
            "--base-url", server.base_url, "--database-url", database_url,
        )  # fmt: skip
    # Restarts and the source code are not gradable this way: left out, never lost.
    assert first["score"] == first["max_score"] > 0, [
        t for t in first["tests"] if t["status"] != "passed"
    ]
    assert first["extra_data"]["points_left_out"] > 0
    assert _scores(second) == _scores(first), "a second grading of the same server must agree"
