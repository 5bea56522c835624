"""Make a sample class of submissions, to try and to time `make grade` before a real one.

    python -m shared.grading.sample_class OUT [--labs 5] [--students 30]

Each student's folder is shaped as `make grade` expects (`OUT/student07/lab05_queue/starter/`).
What a student "submitted" goes round a realistic mix: most students hand in the reference
solution with one known-bug variant applied (`variants/*.patch`: a real mistake, so they lose
some points), every fifth the full solution, every seventh the untouched starter. The class
report then has a spread of scores, common failures and a few top marks, as a real week does.

Instructor-only: it needs `solution/` and `variants/`, which the student release leaves out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from shared.grading.selfcheck import lab_dirs
from shared.grading.variants import IGNORED, apply, parse, variant_files


def submission(lab: Path, number: int, dest: Path) -> str:
    """Write student `number`'s copy of `lab` to `dest`; return what it is."""
    variants = variant_files(lab)
    if number % 7 == 0 or not (lab / "solution").is_dir():
        shutil.copytree(lab / "starter", dest, ignore=IGNORED)
        return "starter"
    if number % 5 == 0 or not variants:
        shutil.copytree(lab / "solution", dest, ignore=IGNORED)
        return "solution"
    variant = parse(variants[number % len(variants)], lab)
    with tempfile.TemporaryDirectory() as tmp:
        patched = Path(tmp) / "impl"
        if error := apply(variant, patched):
            raise SystemExit(f"{variant.label}: {error}")
        shutil.copytree(patched, dest)
    return f"variant {variant.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    parser.add_argument("--labs", nargs="*", type=int, default=None, help="labs (default: all)")
    parser.add_argument("--students", type=int, default=30)
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} exists; give a new folder", file=sys.stderr)
        return 2
    labs = lab_dirs(args.labs)
    for number in range(1, args.students + 1):
        student = args.out / f"student{number:02d}"
        kinds = [f"{lab.name} {submission(lab, number, student / lab.name / 'starter')}"
                 for lab in labs]  # fmt: skip
        print(f"{student.name}: " + ", ".join(kinds))
    print(f"{args.students} submissions of {', '.join(p.name for p in labs)} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
