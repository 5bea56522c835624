"""The self-check names a points test that passes on the starter."""

from shared.grading.selfcheck import Check, is_regression, run_check
from tests.helpers import DEMO_LAB


def test_selfcheck_accepts_solution_and_names_a_test_that_passes_on_the_starter():
    on_solution = run_check(Check(DEMO_LAB, DEMO_LAB / "solution", expect_pass=True))
    assert on_solution.ok, on_solution.problems

    on_starter = run_check(Check(DEMO_LAB, DEMO_LAB / "starter", expect_pass=False))
    assert not on_starter.ok
    assert len(on_starter.problems) == 1
    assert "test_health_is_ok passes on the starter" in on_starter.problems[0]


def test_an_earlier_labs_contract_may_pass_on_the_starter():
    # Lab 5's starter extends lab 4's solution: labs 1-4's re-run contracts pass on it.
    assert is_regression({"name": "Regression lab01_rest: 1. Create items: test_create"})
    assert not is_regression({"name": "1. Orders publish order.created: test_order"})


def test_only_a_lab_that_declares_it_is_graded_alone(tmp_path):
    from shared.grading.runner import REPO_ROOT
    from shared.grading.selfcheck import grade_alone

    assert grade_alone(REPO_ROOT / "labs" / "lab07_load"), "lab 7's verdicts judge latency"
    assert not grade_alone(REPO_ROOT / "labs" / "lab01_rest")
    assert not grade_alone(DEMO_LAB)
    lab = tmp_path / "lab99_x"
    (lab / "tests").mkdir(parents=True)
    (lab / "tests" / "conftest.py").write_text("# GRADE_ALONE = True is only a comment here\n")
    assert not grade_alone(lab)
