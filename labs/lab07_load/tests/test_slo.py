"""Lab 7, task 3: an SLO check that fails a bad build and passes a good one.

The grader's SLO file (SLO_CONFIG): p95 within 1000 ms, at most 1 % failed requests, at
least 2 requests/s (1 for the slowed build, whose users wait 2 s per request). Three runs
of the student's locustfile: the normal build must pass (exit code 0); a build slowed by
2000 ms per request must fail on p95 alone; a build that fails 30 % of requests, judged with
an unreachable throughput floor, must fail on errors and throughput, not on p95. Each missed
objective is named on its own "SLO failed: <key>" line.

The bounds themselves are checked on made-up windows (checks.py, no service and no clock):
`evaluate()` at each bound and one step past it, and `check_run`'s exit code and lines.
"""

from __future__ import annotations

from typing import Any

import pytest

from labs.lab07_load.tests.conftest import SLOWED_MS
from labs.lab07_load.tests.loadrun import LoadRun

TASK = "3. The SLO check"


def _ran(run: LoadRun, what: str) -> None:
    if run.exit_code is None:
        pytest.fail(
            f"the run against {what} did not end within {run.seconds_limit:.0f} s:\n{run.tail()}",
            pytrace=False,
        )


@pytest.mark.points(12, task=TASK)
def test_slo_check_fails_a_slowed_build_and_passes_the_normal_one(
    normal_run: LoadRun, slowed_run: LoadRun
) -> None:
    _ran(slowed_run, f"the slowed build (+{SLOWED_MS} ms per request)")
    assert slowed_run.exit_code != 0, (
        f"every request of the slowed build took over {SLOWED_MS} ms, yet locust exited with "
        f"0: the SLO check must set environment.process_exit_code = 1 when p95 is too high"
    )
    failed = slowed_run.failed_slos()
    assert "p95_ms" in failed, (
        f"the slowed build's run exited with {slowed_run.exit_code} but logged no "
        f"'SLO failed: p95_ms ...' line. Its output ends:\n{slowed_run.tail(8)}"
    )
    assert failed == {"p95_ms"}, (
        f"only p95_ms was missed by the slowed build, but the check also named "
        f"{sorted(failed - {'p95_ms'})}"
    )
    _ran(normal_run, "the normal build")
    assert normal_run.exit_code == 0, (
        f"the normal build meets the SLO, yet the run exited with {normal_run.exit_code} "
        f"(missed: {sorted(normal_run.failed_slos()) or 'none named'}); set the exit code "
        f"to 0 when every objective is met (a p95 above 1000 ms on the normal build means an "
        f"overloaded machine: run again). Output ends:\n{normal_run.tail(8)}"
    )


@pytest.mark.points(13, task=TASK)
def test_slo_check_names_each_failed_objective(failing_run: LoadRun) -> None:
    _ran(failing_run, "the failing build")
    assert failing_run.exit_code != 0, (
        "30 % of requests failed and the throughput floor was unreachable, yet locust exited with 0"
    )
    failed = failing_run.failed_slos()
    missing = {"max_error_ratio", "min_rps"} - failed
    assert not missing, (
        f"the failing build missed max_error_ratio and min_rps, but no 'SLO failed: <key>' "
        f"line named {sorted(missing)}. Output ends:\n{failing_run.tail(8)}"
    )
    assert "p95_ms" not in failed, (
        "the failing build answers fast, yet the check reported p95_ms as missed"
    )


# What evaluate() must answer for each made-up window of checks.py (SLO: p95_ms 200,
# max_error_ratio 0.01, min_rps 2): the keys of the objectives missed. Each bound is met at
# the bound itself ("above"/"below" the bound misses it) and missed one step past it.
EVALUATE_WANTS = {
    "p95 at the bound": set(),
    "p95 one bucket past the bound": {"p95_ms"},
    "p95 above, average below": {"p95_ms"},
    "errors at the budget (1 of 100)": set(),
    "errors past the budget (2 of 100)": {"max_error_ratio"},
    "requests/s at the floor (20 in 10 s)": set(),
    "requests/s below the floor (19 in 10 s)": {"min_rps"},
    "requests/s below the floor, throughput=False": set(),
    "no requests": {"min_rps"},
    "no requests, throughput=False": set(),
    "every objective missed": {"p95_ms", "max_error_ratio", "min_rps"},
    "p95 below, the slowest 4 % far above": set(),
    "p95 above, most distinct times below": {"p95_ms"},
    "errors just past the budget (2 of 199)": {"max_error_ratio"},
    "half failed, requests/s at the floor (20 in 10 s)": {"max_error_ratio"},
}


def _keys(messages: list[str]) -> list[str]:
    return [m.split(":", 1)[0].strip() for m in messages]


@pytest.mark.points(8, task=TASK)
def test_evaluate_judges_each_objective_at_its_bound(offline_checks: dict[str, Any]) -> None:
    if "slo_error" in offline_checks:
        pytest.fail(f"load/slo.py does not import:\n{offline_checks['slo_error']}", pytrace=False)
    answers = {a["case"]: a for a in offline_checks["evaluate"]}
    wrong = []
    for case, want in EVALUATE_WANTS.items():
        answer = answers[case]
        if "error" in answer:
            wrong.append(f"{case}: evaluate() raised\n{answer['error']}")
            continue
        keys = _keys(answer["messages"])
        if set(keys) != want or len(keys) != len(set(keys)):
            wrong.append(f"{case}: expected {sorted(want) or 'no miss'}, got {answer['messages']}")
    # The first wrong case leads: the one-line feedback shows only the message's first line.
    assert not wrong, (
        f"evaluate() answered {len(wrong)} of {len(EVALUATE_WANTS)} windows wrong; the first: "
        f"{wrong[0].splitlines()[0]}\n"
        "The rules (SLO: p95_ms = 200, max_error_ratio = 0.01, min_rps = 2): one message per "
        "missed objective, starting with its key; a value AT the bound meets it, p95 and "
        "errors miss only above it, requests/s only below it, a window without requests "
        "misses min_rps, throughput=False skips min_rps; p95 is the time 95 % of the requests "
        "beat (calculate_response_time_percentile of the histogram, not the slowest one); the "
        "error ratio is failures / requests (locust's requests include the failed ones), a "
        "share, not a percentage; failed requests count in requests/s. Every wrong window:\n"
        + "\n".join(wrong)
    )


@pytest.mark.points(5, task=TASK)
def test_check_run_sets_the_exit_code_from_the_slo(offline_checks: dict[str, Any]) -> None:
    if "slo_error" in offline_checks:
        pytest.fail(f"load/slo.py does not import:\n{offline_checks['slo_error']}", pytrace=False)
    answers = {a["case"]: a for a in offline_checks["check_run"]}
    wants = {
        "1 of 100 failed, within the budget": (0, set()),
        "2 of 100 failed, past the budget": (1, {"max_error_ratio"}),
        "every objective missed": (1, {"p95_ms", "max_error_ratio", "min_rps"}),
    }
    wrong = []
    for case, (code, keys) in wants.items():
        answer = answers[case]
        if "error" in answer:
            wrong.append(f"{case}: the quitting listener raised\n{answer['error']}")
            continue
        failed = [m[len("SLO failed:") :] for m in answer["log"] if m.startswith("SLO failed:")]
        met = [m for m in answer["log"] if m.startswith("SLO met")]
        if answer["exit_code"] != code:
            wrong.append(f"{case}: exit code {answer['exit_code']}, expected {code}")
        if sorted(_keys(failed)) != sorted(keys):
            wrong.append(f"{case}: logged {answer['log']}, expected one 'SLO failed: <key>: "
                         f"...' line for each of {sorted(keys) or 'none'}")  # fmt: skip
        if not keys and not met:
            wrong.append(f"{case}: logged {answer['log']}, expected a line 'SLO met: ...'")
    assert not wrong, (
        f"check_run went wrong in {len(wrong)} check(s); the first: {wrong[0].splitlines()[0]}\n"
        "Given a finished run of 100 requests in 10 s, GET /items and the failed ones POST "
        "/orders (judge the total: environment.stats.total), with SLO p95_ms = 200, "
        "max_error_ratio = 0.01, min_rps = 2, it must set environment.process_exit_code to 0 "
        "when every objective is met, even with failed requests within the error budget "
        "(locust's default would be 1), and to 1 otherwise. Every wrong check:\n" + "\n".join(wrong)
    )
