"""Check every lab's grading tests in both directions.

For each lab: every points test must pass on each reference solution (`solution/`,
`solution_*/`) and fail on `starter/`. A points test that passes on the starter grades nothing
(it would give points for untouched code): it is a defect in the test, and this check names it.
Re-runs of earlier labs' contracts ("Regression ..." tests) are exempt on the starter: a
starter that extends the previous lab's solution passes them by design (labs 5 and later);
the starter's line reports the lab's own points and the regression's apart.
In the student release there are no solutions; then only the starter direction is checked.

    python -m shared.grading.selfcheck            # all labs
    python -m shared.grading.selfcheck 1 3        # labs 1 and 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Check:
    lab: Path
    impl: Path
    expect_pass: bool


@dataclass
class Outcome:
    check: Check
    ok: bool
    seconds: float
    problems: list[str]
    summary: str


def lab_dirs(numbers: list[int] | None = None) -> list[Path]:
    labs = sorted(p for p in (REPO_ROOT / "labs").glob("lab[0-9][0-9]_*") if (p / "tests").is_dir())
    if numbers:
        labs = [p for p in labs if int(p.name[3:5]) in numbers]
    return labs


def checks_for(lab: Path) -> list[Check]:
    solutions = sorted(p for p in lab.glob("solution*") if (p / "app").is_dir())
    checks = [Check(lab, s, expect_pass=True) for s in solutions]
    if (lab / "starter" / "app").is_dir():
        checks.append(Check(lab, lab / "starter", expect_pass=False))
    return checks


def is_regression(test: dict[str, Any]) -> bool:
    """An earlier lab's contract test re-run on this lab's code (its task says so)."""
    return str(test.get("name", "")).startswith("Regression ")


def run_check(check: Check) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "results.json"
        cmd = [
            sys.executable, "-m", "pytest", str(check.lab / "tests"),
            "--impl", str(check.impl), "--grade-json", str(report),
            "-q", "-p", "no:cacheprovider", "--no-header", "-rN",
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        if not report.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            return Outcome(check, False, seconds, [f"no results.json; pytest said:\n{tail}"], "")
        data = json.loads(report.read_text())
    problems: list[str] = []
    tests = data["tests"]
    if not tests:
        problems.append("the lab has no points tests")
    if check.expect_pass:
        problems += [f"{t['name']} fails: {t['output']}" for t in tests if t["status"] != "passed"]
        if proc.returncode != 0 and not problems:
            tail = "\n".join(proc.stdout.splitlines()[-10:])
            problems.append(f"a test without points failed (exit {proc.returncode}):\n{tail}")
    else:
        problems += [
            f"{t['name']} passes on the starter: it grades nothing (a defect in the test)"
            for t in tests
            if t["status"] == "passed" and not is_regression(t)
        ]
    summary = f"{data['score']:g}/{data['max_score']:g} points, {len(tests)} points tests"
    regression = [t for t in tests if is_regression(t)]
    if not check.expect_pass and regression:
        own = [t for t in tests if not is_regression(t)]
        summary = (
            f"own {sum(t['score'] for t in own):g}/{sum(t['max_score'] for t in own):g} points "
            f"({len(own)} tests); regression {sum(t['score'] for t in regression):g}/"
            f"{sum(t['max_score'] for t in regression):g}"
        )
    return Outcome(check, not problems, seconds, problems, summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("labs", nargs="*", type=int, help="lab numbers (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="checks run at once")
    args = parser.parse_args(argv)

    checks = [c for lab in lab_dirs(args.labs) for c in checks_for(lab)]
    if not checks:
        print("no labs with tests found", file=sys.stderr)
        return 1
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(run_check, checks))
    failed = False
    for out in outcomes:
        want = "all pass" if out.check.expect_pass else "all fail"
        mark = "ok  " if out.ok else "FAIL"
        impl = out.check.impl.relative_to(REPO_ROOT)
        print(f"{mark} {impl!s:<42} expect {want:<8}  {out.summary:<32} {out.seconds:5.1f}s")
        for problem in out.problems:
            failed = True
            print(f"       - {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
