"""The sample class: a realistic mix of submissions for trying and timing `make grade`."""

import filecmp
from pathlib import Path

from shared.grading.runner import REPO_ROOT
from shared.grading.sample_class import main

LAB = REPO_ROOT / "labs" / "lab01_rest"


def differs(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.diff_files:
            return True
        stack += c.subdirs.values()
    return False


def test_a_sample_class_mixes_solutions_starters_and_known_bugs(tmp_path: Path, capsys):
    out = tmp_path / "class"
    assert main([str(out), "--labs", "1", "--students", "8"]) == 0
    said = capsys.readouterr().out
    students = sorted(p.name for p in out.iterdir())
    assert students == [f"student{n:02d}" for n in range(1, 9)]

    def work(n: int) -> Path:
        return out / f"student{n:02d}" / "lab01_rest" / "starter"

    assert not differs(work(7), LAB / "starter"), "every seventh hands in the starter"
    assert not differs(work(5), LAB / "solution"), "every fifth the full solution"
    for n in (1, 2, 3, 4, 6, 8):
        assert (work(n) / "app").is_dir()
        assert differs(work(n), LAB / "solution"), f"student {n} has one known bug"
    assert "student01: lab01_rest variant " in said


def test_an_existing_folder_is_refused(tmp_path: Path):
    assert main([str(tmp_path), "--labs", "1", "--students", "1"]) == 2
