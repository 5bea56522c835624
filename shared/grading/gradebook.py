"""Grade a folder of submissions into one gradebook.

    python -m shared.grading.gradebook SUBMISSIONS [--labs 1 2] [--out DIR] [--jobs 2]

SUBMISSIONS has one folder per student, each shaped like the repo's `labs/`
(`SUBMISSIONS/alice/lab01_rest/starter/app/...`). Each (student, lab) is graded in its own
pytest process with our tests (never the submission's copy), its own database and Redis prefix,
and a per-test timeout. Writes under --out `gradebook.csv` (a row per student, a column per
lab, a total), `<student>/<lab>/results.json` (Gradescope format, one per assignment) and
`<student>/results.json` (all graded labs together). A submission whose copy of our
tests differs from ours is reported, not failed: the tests that ran are ours either way.
Beside them `report.html` (with `charts/*.png`) is the class report, see
`shared.grading.report`. The time each grading took is printed, and the whole run's.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.grading.report import write_report
from shared.grading.runner import REPO_ROOT, stop_all_on_sigterm
from shared.grading.runner import grade as grade_impl
from shared.grading.selfcheck import grade_alone, lab_dirs


@dataclass
class LabGrade:
    student: str
    lab: str
    score: float = 0.0
    max_score: float = 0.0
    tests: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    tests_differ: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0


def find_impl(lab_folder: Path) -> Path | None:
    """The student's code: their `starter/` (where students work), else the folder itself."""
    for candidate in (lab_folder / "starter", lab_folder / "solution", lab_folder):
        if (candidate / "app").is_dir():
            return candidate
    return None


def _digest_tree(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def tests_that_differ(ours: Path, theirs: Path) -> list[str]:
    """Test files whose content differs between our tests and the submission's copy."""
    a, b = _digest_tree(ours), _digest_tree(theirs)
    if not b:
        return []  # no copy submitted: nothing to compare
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))


def grade_one(student_dir: Path, lab: Path, timeout: float) -> LabGrade:
    grade = LabGrade(student=student_dir.name, lab=lab.name)
    folder = student_dir / lab.name
    grade.tests_differ = tests_that_differ(lab / "tests", folder / "tests")
    impl = find_impl(folder)
    if impl is None:
        grade.note = "not submitted" if not folder.exists() else "no app/ package found"
        grade.max_score = _max_score(lab)
        return grade
    graded = grade_impl(lab, impl, timeout=timeout)
    grade.seconds, grade.cpu = graded.seconds, graded.cpu
    if graded.data is not None:
        grade.score, grade.max_score = graded.data["score"], graded.data["max_score"]
        grade.tests = graded.tests
        if graded.note:
            grade.note = graded.note
    else:
        grade.note = graded.note
        grade.max_score = _max_score(lab)
    return grade


_MAX: dict[str, float] = {}


def _max_score(lab: Path) -> float:
    """Points available in a lab: our tests collected, none run."""
    if lab.name not in _MAX:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "results.json"
            cmd = [
                sys.executable, "-m", "pytest", str(lab / "tests"), "--collect-only", "-q",
                "--grade-json", str(report), "-p", "no:cacheprovider",
            ]  # fmt: skip
            subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, check=False, timeout=120)
            _MAX[lab.name] = json.loads(report.read_text())["max_score"] if report.exists() else 0
    return _MAX[lab.name]


def _gradescope(grades: list[LabGrade]) -> dict[str, Any]:
    tests = []
    for g in grades:
        prefix = f"{g.lab}: " if len(grades) > 1 else ""
        tests += [{**t, "name": f"{prefix}{t['name']}"} for t in g.tests]
    for number, t in enumerate(tests, start=1):
        t["number"] = str(number)
    return {
        "score": sum(g.score for g in grades),
        "max_score": sum(g.max_score for g in grades),
        "execution_time": round(sum(g.seconds for g in grades), 2),
        "output": "\n".join(
            f"{g.lab}: {g.score:g}/{g.max_score:g} {g.note}".rstrip() for g in grades
        ),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def unexpected_folders(student_dir: Path, labs: list[Path]) -> list[str]:
    """Folders in a submission that match none of our labs (e.g. `lab1/` for `lab01_rest/`)."""
    known = {lab.name for lab in labs}
    return sorted(
        p.name
        for p in student_dir.iterdir()
        if p.is_dir() and p.name not in known and not p.name.startswith(".")
    )


def write_outputs(out: Path, grades: list[LabGrade], labs: list[Path]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    students = sorted({g.student for g in grades})
    by_key = {(g.student, g.lab): g for g in grades}
    book = out / "gradebook.csv"
    with book.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", *[lab.name for lab in labs], "total", "max", "notes"])
        for student in students:
            row = [by_key[(student, lab.name)] for lab in labs]
            notes = [f"{g.lab}: {g.note}" for g in row if g.note]
            notes += [
                f"{g.lab}: tests differ ({', '.join(g.tests_differ)})"
                for g in row
                if g.tests_differ
            ]
            writer.writerow(
                [
                    student,
                    *[f"{g.score:g}" for g in row],
                    f"{sum(g.score for g in row):g}",
                    f"{sum(g.max_score for g in row):g}",
                    "; ".join(notes),
                ]
            )
    for student in students:
        row = [by_key[(student, lab.name)] for lab in labs]
        for g in row:
            (out / student / g.lab).mkdir(parents=True, exist_ok=True)
            (out / student / g.lab / "results.json").write_text(
                json.dumps(_gradescope([g]), indent=2) + "\n"
            )
        (out / student / "results.json").write_text(json.dumps(_gradescope(row), indent=2) + "\n")
    return book


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="grade a folder of submissions")
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--labs", nargs="*", type=int, help="lab numbers (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="default: SUBMISSIONS/_grades")
    # Generous: the first test of a lab also pays for its session set-up (migrations, seeding).
    parser.add_argument("--timeout", type=float, default=180, help="seconds per test")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once")
    args = parser.parse_args(argv)
    stop_all_on_sigterm()

    started = time.monotonic()
    console = Console(stderr=True)
    students = sorted(
        p for p in args.submissions.iterdir() if p.is_dir() and not p.name.startswith("_")
    )
    labs = [lab for lab in lab_dirs(args.labs) if (lab / "starter").is_dir()]
    if not students or not labs:
        console.print(f"nothing to grade: {len(students)} students, {len(labs)} labs")
        return 1
    jobs = [(s, lab) for s in students for lab in labs]
    grades: list[LabGrade] = []
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )  # fmt: skip
    # A lab whose verdicts measure the machine (GRADE_ALONE, lab 7's latency bounds) is graded
    # one submission at a time after the others: a second grading beside it would cost a
    # student points that the machine, not their code, lost.
    shared_jobs = [(s, lab) for s, lab in jobs if not grade_alone(lab)]
    alone_jobs = [(s, lab) for s, lab in jobs if grade_alone(lab)]
    with Progress(*columns, console=console) as progress, ThreadPoolExecutor(args.jobs) as pool:
        bar = progress.add_task("grading", total=len(jobs))
        futures = {pool.submit(grade_one, s, lab, args.timeout) for s, lab in shared_jobs}
        for future in as_completed(futures):
            grade = future.result()
            grades.append(grade)
            progress.update(bar, advance=1, description=f"{grade.student}/{grade.lab}")
        for s, lab in alone_jobs:
            grade = grade_one(s, lab, args.timeout)
            grades.append(grade)
            progress.update(bar, advance=1, description=f"{grade.student}/{grade.lab} (alone)")

    out = args.out or args.submissions / "_grades"
    book = write_outputs(out, grades, labs)
    page = write_report(out, grades, [lab.name for lab in labs])
    table = Table("student", *[lab.name for lab in labs], "total", title=str(book))
    by_key = {(g.student, g.lab): g for g in grades}
    for s in students:
        row = [by_key[(s.name, lab.name)] for lab in labs]
        table.add_row(
            s.name,
            *[f"{g.score:g}/{g.max_score:g}" + (" *" if g.tests_differ else "") for g in row],
            f"{sum(g.score for g in row):g}",
        )
    Console().print(table)
    for s in students:
        if extra := unexpected_folders(s, labs):
            console.print(
                f"[yellow]note[/]: {s.name} has folders that match no lab: {', '.join(extra)} "
                f"(expected names like {labs[0].name})"
            )
    for g in sorted(grades, key=lambda g: (g.student, g.lab)):
        if g.tests_differ:
            console.print(
                f"[yellow]note[/]: {g.student}/{g.lab} ships tests that differ from ours "
                f"({', '.join(g.tests_differ)}); our tests were used."
            )
        if g.note:
            console.print(f"[yellow]note[/]: {g.student}/{g.lab}: {g.note}")
    for lab in labs:
        times = sorted(g.seconds for g in grades if g.lab == lab.name and g.seconds)
        cpu = sorted(g.cpu for g in grades if g.lab == lab.name and g.cpu)
        if times:
            console.print(
                f"time to grade one {lab.name} submission: median {times[len(times) // 2]:.0f}s, "
                f"slowest {times[-1]:.0f}s"
                + (f" (CPU median {cpu[len(cpu) // 2]:.0f}s)" if cpu else "")
            )
    minutes = (time.monotonic() - started) / 60
    console.print(
        f"graded {len(jobs)} submissions ({len(students)} students x {len(labs)} labs) in "
        f"{minutes:.1f} min, {args.jobs} at a time; class report: {page}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
