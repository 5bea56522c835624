"""Check every lab's grading tests: both directions, then every known-bug variant.

For each lab: every points test must pass on each reference solution (`solution/`,
`solution_*/`) and fail on `starter/`. A points test that passes on the starter grades nothing
(it would give points for untouched code): it is a defect in the test, and this check names it.
Re-runs of earlier labs' contracts ("Regression ..." tests) are exempt on the starter: a
starter that extends the previous lab's solution passes them by design (labs 5 and later);
the starter's line reports the lab's own points and the regression's apart.

Then each known-bug variant (`variants/*.patch`, see `shared.grading.variants`) is graded like
a submission; the check fails when one keeps full marks or loses points only on tasks other
than the one its header names. A table shows each variant, its task and the points it lost.

In the student release (no solutions, no variants) the starters are graded without expecting
them to fail: the check proves the harness runs, and a student who completes a task keeps CI
green.

A lab whose verdicts measure the machine (lab 7's load tests judge latency) declares
`GRADE_ALONE = True` in its `tests/conftest.py`: its solutions are graded first, one at a time,
with nothing else running, so a second grading beside it cannot make the reference solution
miss a latency bound. Everything else runs `--jobs` at a time: by default two per CPU, at most
four, because a grading mostly waits (servers starting, timeouts it must see expire, locust's
fixed run times) and uses half a CPU on average (timings: the root README, "Self-check").

    python -m shared.grading.selfcheck                 # all labs, all variants
    python -m shared.grading.selfcheck 1 3             # labs 1 and 3
    python -m shared.grading.selfcheck --variant 'lock-*' --variant lab01_rest/price-zero-refused
    python -m shared.grading.selfcheck --no-variants   # both directions only
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.grading.runner import REPO_ROOT, grade, stop_all_on_sigterm
from shared.grading.variants import (
    VariantOutcome,
    check_variant,
    matches,
    variant_files,
)

RELEASE_MARKER = ".student-release"
WIDTH = 100


@dataclass(frozen=True)
class Check:
    lab: Path
    impl: Path
    # True: every points test must pass; False: every own points test must fail;
    # None: graded only (the student release): the harness must run, any score is fine.
    expect_pass: bool | None


@dataclass
class Outcome:
    check: Check
    ok: bool
    seconds: float
    problems: list[str]
    summary: str
    cpu: float = 0.0


def is_release(root: Path = REPO_ROOT) -> bool:
    return (root / RELEASE_MARKER).exists()


def lab_dirs(numbers: list[int] | None = None) -> list[Path]:
    labs = sorted(p for p in (REPO_ROOT / "labs").glob("lab[0-9][0-9]_*") if (p / "tests").is_dir())
    if numbers:
        labs = [p for p in labs if int(p.name[3:5]) in numbers]
    return labs


def checks_for(lab: Path) -> list[Check]:
    solutions = sorted(p for p in lab.glob("solution*") if (p / "app").is_dir())
    checks = [Check(lab, s, expect_pass=True) for s in solutions]
    if (lab / "starter" / "app").is_dir():
        checks.append(Check(lab, lab / "starter", expect_pass=None if is_release() else False))
    return checks


def default_jobs() -> int:
    """Two gradings per CPU, at most four (each opens databases, Redis keys and servers)."""
    return max(1, min(4, 2 * len(os.sched_getaffinity(0))))


def grade_alone(lab: Path) -> bool:
    """Whether the lab asks for its solutions to be graded with nothing else running."""
    conftest = lab / "tests" / "conftest.py"
    if not conftest.is_file():
        return False
    return any(line.strip() == "GRADE_ALONE = True" for line in conftest.read_text().splitlines())


def is_regression(test: dict[str, Any]) -> bool:
    """An earlier lab's contract test re-run on this lab's code (its task says so)."""
    return str(test.get("name", "")).startswith("Regression ")


def run_check(check: Check) -> Outcome:
    graded = grade(check.lab, check.impl)
    if graded.data is None:
        problem = f"{graded.note}; pytest said:\n{graded.tail()}"
        return Outcome(check, False, graded.seconds, [problem], "")
    data = graded.data
    problems: list[str] = []
    tests = data["tests"]
    if not tests:
        problems.append("the lab has no points tests")
    if check.expect_pass:
        problems += [f"{t['name']} fails: {t['output']}" for t in tests if t["status"] != "passed"]
        if graded.returncode != 0 and not problems:
            problems.append(
                f"a test without points failed (exit {graded.returncode}):\n{graded.tail(10)}"
            )
    elif check.expect_pass is False:
        problems += [
            f"{t['name']} passes on the starter: it grades nothing (a defect in the test)"
            for t in tests
            if t["status"] == "passed" and not is_regression(t)
        ]
    summary = f"{data['score']:g}/{data['max_score']:g} points, {len(tests)} points tests"
    regression = [t for t in tests if is_regression(t)]
    if check.expect_pass is False and regression:
        own = [t for t in tests if not is_regression(t)]
        summary = (
            f"own {sum(t['score'] for t in own):g}/{sum(t['max_score'] for t in own):g} points "
            f"({len(own)} tests); regression {sum(t['score'] for t in regression):g}/"
            f"{sum(t['max_score'] for t in regression):g}"
        )
    return Outcome(check, not problems, graded.seconds, problems, summary, graded.cpu)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def check_lines(outcomes: list[Outcome]) -> list[str]:
    lines = []
    for out in outcomes:
        want = {True: "all pass", False: "all fail", None: "graded"}[out.check.expect_pass]
        mark = "ok  " if out.ok else "FAIL"
        impl = _rel(out.check.impl)
        took = f"{out.seconds:.0f}s" + (f" cpu {out.cpu:.0f}s" if out.cpu else "")
        lines.append(f"{mark} {impl:<30} expect {want:<8} {out.summary:<34} {took:>13}")
        for problem in out.problems:
            first, *rest = problem.splitlines() or [""]
            lines += textwrap.wrap(first, WIDTH, initial_indent="       - ",
                                   subsequent_indent="         ")  # fmt: skip
            lines += [f"         {line}" for line in rest]
    return lines


def variant_lines(outcomes: list[VariantOutcome]) -> list[str]:
    """The variants table: variant, its task, the points lost there, and where else."""
    if not outcomes:
        return []
    caught = sum(o.ok for o in outcomes)
    lines = ["", f"Known-bug variants: {caught} of {len(outcomes)} caught by the tests"]
    header = f"{'':4} {'variant':<38} {'task':<38} {'lost':>6} {'time':>6}"
    lines += [header, "-" * len(header)]
    lab = None
    for out in outcomes:
        lab_name = out.path.parent.parent.name
        if lab_name != lab:
            lab = lab_name
            count = sum(o.path.parent.parent.name == lab for o in outcomes)
            lines.append(f"{lab} ({count} variants)")
        mark = "ok  " if out.ok else "FAIL"
        task = out.variant.task if out.variant else "?"
        tasks = textwrap.wrap(task, 38) or [""]
        name = out.path.stem
        lost = f"-{out.lost_on_task:g}" if out.lost_on_task else "0"
        lines.append(f"{mark} {name:<38} {tasks[0]:<38} {lost:>6} {out.seconds:5.0f}s")
        lines += [f"{'':4} {'':<38} {part}" for part in tasks[1:]]
        notes = []
        if elsewhere := out.lost_elsewhere:
            notes.append("also lost: " + ", ".join(f"{t} -{p:g}" for t, p in elsewhere.items()))
        if out.problem:
            notes.insert(0, out.problem)
        for note in notes:
            lines += textwrap.wrap(note, WIDTH, initial_indent="       ",
                                   subsequent_indent="         ")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("labs", nargs="*", type=int, help="lab numbers (default: all)")
    parser.add_argument(
        "--jobs", type=int, default=default_jobs(), help="gradings at once (default: %(default)s)"
    )
    parser.add_argument(
        "--variant", action="append", default=[],
        help="only these variants (name, labNN_x/name or a glob; repeatable); skips the "
        "solution/starter checks",
    )  # fmt: skip
    parser.add_argument("--no-variants", action="store_true", help="skip the variants")
    parser.add_argument(
        "--full", action="store_true",
        help="grade each variant on the whole suite, not only its task's tests (slower; the "
        "table then also shows what it loses on other tasks)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    stop_all_on_sigterm()
    patterns = [p for raw in args.variant for p in raw.replace(",", " ").split()]

    labs = lab_dirs(args.labs)
    checks = [] if patterns else [c for lab in labs for c in checks_for(lab)]
    variants = [] if args.no_variants or is_release() else [
        (path, lab) for lab in labs for path in variant_files(lab)
        if not patterns or matches(path, lab, patterns)
    ]  # fmt: skip
    if not checks and not variants:
        what = "variants matching " + ", ".join(patterns) if patterns else "labs with tests"
        print(f"no {what} found", file=sys.stderr)
        return 1
    started = time.monotonic()
    total = len(checks) + len(variants)
    done = 0

    def progress(label: str, ok: bool, seconds: float) -> None:
        nonlocal done
        done += 1
        mark = "ok  " if ok else "FAIL"
        print(f"[{done:>3}/{total}] {mark} {label} ({seconds:.0f}s)", file=sys.stderr, flush=True)

    def one_check(check: Check) -> Outcome:
        out = run_check(check)
        progress(_rel(check.impl), out.ok, out.seconds)
        return out

    def one_variant(path: Path, lab: Path) -> VariantOutcome:
        try:
            out = check_variant(path, lab, full=args.full)
        except Exception as exc:  # one broken variant must not lose the others' results
            out = VariantOutcome(None, path, False, problem=f"could not be graded: {exc!r}")
        progress(f"{lab.name}/{path.stem}", out.ok, out.seconds)
        return out

    # Solutions of labs that measure the machine first, alone; then the rest, the solution and
    # starter checks submitted first so that they finish first.
    alone = [c for c in checks if c.expect_pass and grade_alone(c.lab)]
    alone_outcomes = {id(c): one_check(c) for c in alone}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        check_futures: dict[int, Future[Outcome]] = {
            id(c): pool.submit(one_check, c) for c in checks if id(c) not in alone_outcomes
        }
        variant_futures = [pool.submit(one_variant, p, lab) for p, lab in variants]
        outcomes = [
            alone_outcomes[id(c)] if id(c) in alone_outcomes else check_futures[id(c)].result()
            for c in checks
        ]
        variant_outcomes = [f.result() for f in variant_futures]

    lines = check_lines(outcomes) + variant_lines(variant_outcomes)
    print("\n".join(lines))
    failed = [o for o in outcomes if not o.ok] + [v for v in variant_outcomes if not v.ok]
    minutes = (time.monotonic() - started) / 60
    verdict = "FAILED" if failed else "passed"
    print(f"\nself-check {verdict}: {total - len(failed)} of {total} gradings as expected, "
          f"{minutes:.1f} min with {args.jobs} at a time")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
