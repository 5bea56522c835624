"""Lab 7, task 3: an SLO check that fails a bad build and passes a good one.

The grader's SLO file (SLO_CONFIG): p95 within 1000 ms, at most 1 % failed requests, at
least 2 requests/s. Three runs of the student's locustfile: the normal build must pass (exit
code 0); a build slowed by 2000 ms per request must fail on p95 alone; a build that fails
30 % of requests, judged with an unreachable throughput floor, must fail on errors and
throughput, not on p95. Each missed objective is named on its own "SLO failed: <key>" line.
"""

from __future__ import annotations

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
