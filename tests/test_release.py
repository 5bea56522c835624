"""The student release: one week's labs, no solutions, variants or hidden tests, still working."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.grading.release import (
    ReleaseError,
    is_solution,
    is_variant,
    make_release,
    strip_hidden,
    student_readme,
)
from tests.helpers import REPO_ROOT

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


def test_solution_and_variant_folders_are_recognised():
    assert is_solution(Path("labs/lab01_rest/solution/app/main.py"))
    assert is_solution(Path("labs/lab01_rest/solution_flask/app/main.py"))
    assert not is_solution(Path("labs/lab01_rest/starter/app/main.py"))
    assert not is_solution(Path("project/imgproc/solution.py"))
    assert is_variant(Path("labs/lab01_rest/variants/price-zero-refused.patch"))
    assert not is_variant(Path("tests/fixtures/labs/lab09_demo/variants/survivor.patch"))


def test_student_readme_drops_instructor_sections_and_unreleased_links():
    readme = (
        "# Course\n[Lab 1: REST](labs/lab01_rest/README.md) and "
        "[Lab 3: cache](labs/lab03_cache/README.md)\n"
        "<!-- instructors -->\n## For instructors\n`make selfcheck`, solution/\n"
        "<!-- /instructors -->\n## Services\n"
    )
    text = student_readme(readme, {"lab01_rest", "lab02_db"})
    assert "For instructors" not in text and "selfcheck" not in text
    assert "[Lab 1: REST](labs/lab01_rest/README.md)" in text
    assert "Lab 3: cache (coming)" in text and "lab03_cache" not in text
    with pytest.raises(ReleaseError, match="selfcheck"):
        student_readme("run `make selfcheck`\n", set())


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def test_a_dirty_labs_folder_is_refused_unless_forced(tmp_path: Path):
    repo = tmp_path / "repo"
    starter = repo / "labs" / "lab01_rest" / "starter"
    starter.mkdir(parents=True)
    (starter / "main.py").write_text("print('hello')\n")
    (repo / "README.md").write_text("# Course\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    (starter / "main.py").write_text("print('an experiment')\n")
    (starter / "scratch.py").write_text("x = 1\n")
    with pytest.raises(ReleaseError) as info:
        make_release(tmp_path / "out", repo)
    message = str(info.value)
    assert "labs/lab01_rest/starter/main.py" in message and "scratch.py" in message
    assert "FORCE=1" in message and "ship to students" in message
    copied, _ = make_release(tmp_path / "forced", repo, force=True)
    assert copied == 2
    assert "an experiment" in (tmp_path / "forced/labs/lab01_rest/starter/main.py").read_text()


@pytest.mark.needs_solution
def test_release_up_to_lab_2_then_a_completed_starter_keeps_make_test_green(tmp_path: Path):
    out = tmp_path / "release"
    # This shared checkout may hold colleagues' uncommitted work under labs/; CI's clone does not.
    make_release(out, upto=2, force=True)
    labs = sorted(p.name for p in (out / "labs").iterdir())
    assert labs == ["lab01_rest", "lab02_db"], "later labs must not be released"
    assert not list(out.glob("labs/*/solution*")) and not list(out.glob("labs/*/variants"))
    for test_file in out.glob("labs/*/tests/*.py"):
        assert "mark.hidden" not in test_file.read_text(), f"{test_file} keeps a hidden test"
    readme = (out / "README.md").read_text()
    assert "For instructors" not in readme and "selfcheck" not in readme
    assert "solution/" not in readme and "(coming)" in readme
    log = subprocess.run(["git", "log", "--oneline"], cwd=out, capture_output=True, text=True)
    assert "Student release" in log.stdout

    # A student completes lab 1 (here: the reference code) and commits; the release's checks
    # grade the starter without expecting it to fail, so CI stays green.
    starter = out / "labs" / "lab01_rest" / "starter"
    shutil.rmtree(starter / "app")
    shutil.copytree(REPO_ROOT / "labs" / "lab01_rest" / "solution" / "app", starter / "app",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (out / ".venv").symlink_to(REPO_ROOT / ".venv")
    env = {**os.environ, "CI": "true"}
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "labs"], cwd=out,
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert ruff.returncode == 0, ruff.stdout
    check = subprocess.run(
        ["make", "-s", "selfcheck", "LAB=1"], cwd=out, capture_output=True, text=True,
        env=env, timeout=600,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    graded = re.search(r"expect graded\s+(\d+)/(\d+) points", check.stdout)
    assert graded and graded[1] == graded[2], (
        f"the completed starter gets full marks: {check.stdout}"
    )
    assert "variants" not in check.stdout
