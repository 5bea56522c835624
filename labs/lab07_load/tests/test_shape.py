"""Lab 7, task 4: a step load that finds where the service saturates.

`load/shape.py` runs with the locustfile: steps of STEP_USERS users every STEP_SECONDS (the
grader: 20 users, 4 s, at most 15 steps), against a build of the shop capped at 1.4 times
step 1's demand (`capped_server` in conftest.py). The grader's SLO here: p95 within 3x the normal
run's p95 (at least 150 ms), at most 1 % failures. The shape must log one line per finished
step, stop at the first step that misses the SLO, and name it in a "saturation at step N
(U users)" line; the statistics history must show the users growing step by step.

The same tick() also runs on a fake clock and made-up statistics (checks.py): there the
steps' timing is exact to the second, each step's own requests decide, and a run without
saturation must end after MAX_STEPS.
"""

from __future__ import annotations

import csv
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from labs.lab07_load.tests.checks import SCENARIOS
from labs.lab07_load.tests.conftest import SHAPE_MAX_STEPS, SHAPE_STEP_SECONDS, SHAPE_STEP_USERS
from labs.lab07_load.tests.loadrun import SATURATION, STEP, LoadRun

TASK = "4. Step load until saturation"


def _steps(run: LoadRun) -> list[tuple[int, int, int, bool]]:
    return [(int(n), int(u), int(p), v == "SLO met") for n, u, p, v in STEP.findall(run.output)]


def _ended(run: LoadRun) -> None:
    if run.exit_code is None:
        pytest.fail(
            f"the step load did not end within {run.seconds_limit:.0f} s: the shape's tick() "
            f"must return None after MAX_STEPS steps or at saturation. Output ends:\n"
            f"{run.tail(8)}",
            pytrace=False,
        )


@pytest.mark.points(10, task=TASK)
def test_shape_steps_users_up(shape_run: LoadRun) -> None:
    _ended(shape_run)
    steps = _steps(shape_run)
    assert len(steps) >= 2, (
        f"expected a line 'step N: U users, ... p95 X ms ...: SLO met|SLO failed' for each "
        f"finished step (at least 2); found {len(steps)}. Output ends:\n{shape_run.tail(8)}"
    )
    for number, users, _, _ in steps:
        assert users == number * SHAPE_STEP_USERS, (
            f"step {number} ran {users} users; with STEP_USERS={SHAPE_STEP_USERS} it should "
            f"run {number * SHAPE_STEP_USERS}"
        )
    assert [s[0] for s in steps] == list(range(1, len(steps) + 1)), (
        f"the steps logged are {[s[0] for s in steps]}, expected 1, 2, 3, ... in order"
    )
    history = shape_run.report("history")
    assert history.is_file(), "the step load wrote no reports/load_stats_history.csv"
    with history.open(newline="") as fh:
        users_seen = {int(r["User Count"]) for r in csv.DictReader(fh) if r["Name"] == "Aggregated"}
    want = {users for _, users, _, _ in steps}
    assert want <= users_seen, (
        f"the statistics history never shows {sorted(want - users_seen)} users, which the "
        f"step lines claim: tick() must return (users, spawn_rate) for each step"
    )


@pytest.mark.points(15, task=TASK)
def test_shape_stops_at_saturation_and_names_the_step(shape_run: LoadRun, shape_slo: Path) -> None:
    _ended(shape_run)
    steps = _steps(shape_run)
    found = SATURATION.findall(shape_run.output)
    bound = tomllib.loads(shape_slo.read_text())["p95_ms"]
    assert found or steps, (
        "the step load logged no 'step N: ...' line at all: tick() ended the run before the "
        f"first step finished (is task 4 written?). Output ends:\n{shape_run.tail(8)}"
    )
    assert found, (
        f"no 'saturation at step N (U users)' line: within {SHAPE_MAX_STEPS} steps of "
        f"{SHAPE_STEP_USERS} users the shop's p95 should exceed {bound:g} ms. Steps seen: "
        f"{[(n, u, p) for n, u, p, _ in steps]}"
    )
    number, users = map(int, found[0])
    assert users == number * SHAPE_STEP_USERS, (
        f"step {number} should have {number * SHAPE_STEP_USERS} users, not {users}"
    )
    by_number = {n: (u, p, met) for n, u, p, met in steps}
    assert number in by_number and not by_number[number][2], (
        f"the saturation line names step {number}, but no 'step {number}: ... SLO failed' "
        f"line precedes it"
    )
    assert number >= 2 and all(by_number.get(n, (0, 0, False))[2] for n in range(1, number)), (
        f"every step before saturation should meet the SLO, and step 1 (as many users as the "
        f"normal run) should not saturate: p95 bound {bound:g} ms; steps: "
        f"{[(n, u, p) for n, u, p, _ in steps]} (on an overloaded machine, run again)"
    )
    last = max(by_number)
    assert last == number, (
        f"the shape went on to step {last} after saturation at step {number}: stop there "
        f"(return None from tick())"
    )
    assert (number + 1) * SHAPE_STEP_SECONDS < shape_run.seconds_limit


# checks.py's fake run: STEP_USERS 40, STEP_SECONDS 4, MAX_STEPS 4, an SLO of max_error_ratio
# 0.01, a p95 bound per scenario and an unreachable min_rps (which a step must not judge); the
# shape is imported and built 30 s before the first tick, then one tick per second at 0, 1, ...
# "saturation": steps 1 and 2 answer in 20 and 30 ms (100 requests/s), step 3 in 1000 ms
# (10 requests/s): only step 3's own requests show it. "no saturation": four fast steps.
# "errors": step 3 is fast but 3 % of it fails. "tight SLO": "saturation"'s steps, p95 25 ms.
FAKE_STEP = (40, 4, 4)
FAKE_STEPS = {
    # scenario (its p95 bound: checks.SCENARIOS): (the tick that ends the run, the saturation
    #   line's (step, users), [(requests, p95 ms, met) of steps 1, 2, ...])
    "saturation": (12, ("3", "120"), [(400, 20, True), (400, 30, True), (40, 1000, False)]),
    "no saturation": (
        16,
        None,
        [(400, 20, True), (400, 30, True), (400, 40, True), (400, 40, True)],
    ),
    "errors": (12, ("3", "120"), [(400, 20, True), (400, 30, True), (400, 20, False)]),
    "tight SLO": (8, ("2", "80"), [(400, 20, True), (400, 30, False)]),
}
STEP_REQUESTS = re.compile(r"step (\d+): \d+ users, (\d+) requests")


@pytest.mark.points(10, task=TASK)
def test_shape_steps_on_time_and_judges_each_step_alone(offline_checks: dict[str, Any]) -> None:
    if "shape" not in offline_checks:
        pytest.fail("no load/shape.py (the step load shape)", pytrace=False)
    users, seconds, max_steps = FAKE_STEP
    for scenario, (end, saturation, want_steps) in FAKE_STEPS.items():
        bound = SCENARIOS[scenario][0]
        answer = offline_checks["shape"][scenario]
        where = (
            f"In a fake run ({scenario}; STEP_USERS={users}, STEP_SECONDS={seconds}, "
            f"MAX_STEPS={max_steps}, SLO_CONFIG: p95 {bound} ms, max_error_ratio 0.01; "
            f"the shape built 30 s before the run starts, tick() called at 0, 1, 2, ... s)"
        )
        assert "error" not in answer, f"{where} tick() raised:\n{answer['error']}"
        ticks = answer["ticks"]
        why_end = f"saturation at step {saturation[0]}" if saturation else "MAX_STEPS done"
        for tick in ticks:
            second, got = tick["second"], tick["answer"]
            want = (second // seconds + 1) * users if second < end else None
            if want is None:
                assert got is None, (
                    f"{where} tick() at {second} s answered {got}: the run should have ended "
                    f"at {end} s ({why_end})"
                    f" with None, and stay ended"
                )
            else:
                assert got is not None and int(got[0]) == want and got[1] > 0, (
                    f"{where} tick() at {second} s answered {got}, expected ({want}, a spawn "
                    f"rate): step k runs k x STEP_USERS users for exactly STEP_SECONDS, counted "
                    f"from the first tick (the step of second {second} is "
                    f"{second // seconds + 1})"
                )
        output = "\n".join(line for tick in ticks for line in tick["log"])
        steps = [(int(n), int(p), v == "SLO met") for n, _, p, v in STEP.findall(output)]
        counts = {int(n): int(r) for n, r in STEP_REQUESTS.findall(output)}
        got_steps = [(counts.get(n, -1), p, met) for n, p, met in steps]
        assert [n for n, _, _ in steps] == list(range(1, len(want_steps) + 1)) and (
            got_steps == want_steps
        ), (
            f"{where} the step lines were {got_steps or 'none'} (requests, p95, SLO met), "
            f"expected {want_steps}: judge each step on its own requests "
            f"(self.snapshot().minus(self.step.start)) with evaluate(..., throughput=False), "
            f"every objective but min_rps, and the SLO of load_slo() (SLO_CONFIG). "
            f"Log:\n{output}"
        )
        if saturation:
            step, users_then = saturation
            assert SATURATION.findall(output) == [saturation], (
                f"{where} expected one line 'saturation at step {step} ({users_then} users)'. "
                f"Log:\n{output}"
            )
        else:
            assert "no saturation" in output and not SATURATION.findall(output), (
                f"{where} expected a line 'no saturation ...' after MAX_STEPS steps within the "
                f"SLO. Log:\n{output}"
            )
