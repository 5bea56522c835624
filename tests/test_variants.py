"""Known-bug variants in the self-check: caught, survived, or caught on the wrong task."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.grading.selfcheck import variant_lines
from shared.grading.variants import VariantError, check_variant, matches, parse
from tests.helpers import DEMO_LAB

VARIANTS = DEMO_LAB / "variants"


def test_a_variant_file_is_a_header_and_a_diff():
    variant = parse(VARIANTS / "answer-off-by-one.patch")
    assert variant.task == "1. Answer"
    assert variant.breaks == "GET /answer returns 42"
    assert variant.diff.startswith("--- a/app/__main__.py")
    assert variant.label == "lab09_demo/answer-off-by-one"


def test_a_variant_without_its_header_is_refused(tmp_path: Path):
    bad = tmp_path / "no-task.patch"
    bad.write_text("# breaks: something\n--- a/app/x.py\n+++ b/app/x.py\n")
    with pytest.raises(VariantError, match="# task"):
        parse(bad)


def test_variants_are_selected_by_name_lab_and_glob():
    path = VARIANTS / "wrong-task.patch"
    assert matches(path, DEMO_LAB, ["wrong-task"])
    assert matches(path, DEMO_LAB, ["lab09_demo/wrong-*"])
    assert not matches(path, DEMO_LAB, ["survivor", "lab01_rest/wrong-task"])


def test_caught_survived_and_wrong_task_variants_are_told_apart():
    names = ["answer-off-by-one", "survivor", "wrong-task"]
    with ThreadPoolExecutor(2) as pool:
        caught, survivor, wrong = pool.map(
            lambda n: check_variant(VARIANTS / f"{n}.patch", DEMO_LAB, full=True), names
        )
    assert caught.ok and caught.lost == {"1. Answer": 3.0}, caught
    assert not survivor.ok and "survived" in survivor.problem and survivor.lost == {}
    assert not wrong.ok and "only on other tasks" in wrong.problem
    assert wrong.lost == {"2. Health": 2.0}
    lines = variant_lines([caught, survivor, wrong])
    assert all(len(line) <= 100 for line in lines)
    text = "\n".join(lines)
    assert "1 of 3 caught" in text
    row = next(line for line in lines if "answer-off-by-one" in line)
    assert row.startswith("ok") and "1. Answer" in row and "-3" in row
    assert "also lost: 2. Health -2" in text


def test_a_patch_that_no_longer_applies_is_named(tmp_path: Path):
    stale = tmp_path / "stale.patch"
    stale.write_text(
        "# task: 1. Answer\n# breaks: GET /answer returns 42\n"
        "--- a/app/__main__.py\n+++ b/app/__main__.py\n@@ -1,1 +1,1 @@\n-no such line\n+x\n"
    )
    outcome = check_variant(stale, DEMO_LAB)
    assert not outcome.ok and "does not apply to solution/" in outcome.problem


def test_by_default_a_variant_is_graded_on_its_own_task_only_with_the_same_verdict():
    names = ["answer-off-by-one", "survivor", "wrong-task"]
    with ThreadPoolExecutor(2) as pool:
        caught, survivor, wrong = pool.map(
            lambda n: check_variant(VARIANTS / f"{n}.patch", DEMO_LAB), names
        )
    # Only task 1's tests ran: what wrong-task breaks (task 2) is not even graded.
    assert caught.ok and caught.lost == {"1. Answer": 3.0}, caught
    assert not survivor.ok and "survived" in survivor.problem
    assert not wrong.ok and wrong.lost == {}, "its own task keeps full marks: not caught"


def test_a_variant_naming_no_task_of_the_lab_is_told_so(tmp_path: Path):
    text = (VARIANTS / "answer-off-by-one.patch").read_text()
    typo = tmp_path / "typo.patch"
    typo.write_text(text.replace("# task: 1. Answer", "# task: 1. Answers"))
    outcome = check_variant(typo, DEMO_LAB)
    assert not outcome.ok
    assert "`# task: 1. Answers` is no task of the lab" in outcome.problem, outcome.problem
    assert "1. Answer; 2. Health" in outcome.problem
