"""The student release: no solutions, no hidden tests, still a working repository."""

import subprocess
from pathlib import Path

from shared.grading.release import is_solution, make_release, strip_hidden

SOURCE = """import pytest
import json


@pytest.mark.points(2, task="1. A")
def test_visible():
    assert True


@pytest.mark.points(1, task="1. A")
@pytest.mark.hidden
def test_hidden():
    assert json.loads("1") == 1


class TestGroup:
    @pytest.mark.hidden
    def test_hidden_method(self):
        pass

    def test_visible_method(self):
        pass
"""


def test_strip_hidden_removes_marked_functions_and_methods_only():
    text, removed = strip_hidden(SOURCE)
    assert removed == 2
    assert text is not None
    assert "test_visible" in text and "test_visible_method" in text
    assert "test_hidden" not in text
    compile(text, "stripped.py", "exec")


def test_a_module_marked_hidden_is_left_out_whole():
    text, _ = strip_hidden("import pytest\npytestmark = [pytest.mark.hidden]\n")
    assert text is None


def test_solution_folders_are_recognised():
    assert is_solution(Path("labs/lab01_rest/solution/app/main.py"))
    assert is_solution(Path("labs/lab01_rest/solution_flask/app/main.py"))
    assert not is_solution(Path("labs/lab01_rest/starter/app/main.py"))
    assert not is_solution(Path("project/imgproc/solution.py"))


def test_release_of_this_repo_has_no_solutions_and_is_a_git_repo(tmp_path: Path):
    out = tmp_path / "release"
    copied, _ = make_release(out)
    assert copied > 10
    assert not list(out.glob("labs/*/solution*")), "solutions must not be released"
    assert (out / "labs" / "lab01_rest" / "starter").is_dir()
    assert (out / "Makefile").is_file() and (out / ".ci" / "run").is_file()
    for test_file in out.glob("labs/*/tests/*.py"):
        assert "mark.hidden" not in test_file.read_text(), f"{test_file} keeps a hidden test"
    log = subprocess.run(["git", "log", "--oneline"], cwd=out, capture_output=True, text=True)
    assert "Student release" in log.stdout
