"""Known-bug variants: one realistic mistake each, which the lab's tests must catch.

A variant is `labs/labNN_*/variants/<name>.patch`:

    # task: 2. Items in PostgreSQL
    # breaks: a duplicate name answers 409 Conflict
    --- a/app/api/routes/items.py
    +++ b/app/api/routes/items.py
    @@ ...

The header names the task exactly as in the points markers and the handout clause the patch
breaks; the rest is a unified diff against the lab's `solution/`. The self-check copies
`solution/` to a scratch folder, applies the diff with `patch -p1` and grades the copy like a
submission. The variant is caught when it loses points on its task; it is a defect of the
tests when it keeps full marks ("survived") or loses points only on other tasks.

By default a variant is graded on its own task's tests only (`--grade-task`): the verdict is
the same (caught exactly when it loses points there) at a fraction of the time, since a lab's
re-runs of earlier labs and its other tasks are skipped. It also stops at the task's first
failing test (`--maxfail=1`): one lost test is enough to call the variant caught, so the table's
"lost" column then shows what was lost up to that test, not the variant's whole cost.
`full=True` grades the whole suite, which also shows what the variant loses elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from shared.grading.runner import grade

IGNORED = shutil.ignore_patterns("__pycache__", ".mypy_cache", ".pytest_cache", "*.pyc")


class VariantError(ValueError):
    """A variant file that cannot be used (no header, no diff)."""


@dataclass(frozen=True)
class Variant:
    lab: Path
    path: Path
    task: str
    breaks: str
    diff: str

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def label(self) -> str:
        return f"{self.lab.name}/{self.name}"


def parse(path: Path, lab: Path | None = None) -> Variant:
    """Read a variant file: its `# task:` and `# breaks:` header, then its diff."""
    text = path.read_text()
    header: dict[str, str] = {}
    lines = text.splitlines(keepends=True)
    body_start = 0
    for number, line in enumerate(lines):
        if not line.startswith("#"):
            body_start = number
            break
        key, _, value = line[1:].partition(":")
        header[key.strip().lower()] = value.strip()
    else:
        body_start = len(lines)
    diff = "".join(lines[body_start:])
    missing = [k for k in ("task", "breaks") if not header.get(k)]
    if missing:
        raise VariantError(f"{path.name}: the header lacks `# {missing[0]}: ...`")
    if "\n+++ " not in "\n" + diff and not diff.startswith("+++ "):
        raise VariantError(f"{path.name}: no unified diff after the header")
    return Variant(lab or path.parent.parent, path, header["task"], header["breaks"], diff)


def variant_files(lab: Path) -> list[Path]:
    return sorted((lab / "variants").glob("*.patch"))


def matches(path: Path, lab: Path, patterns: list[str]) -> bool:
    """Whether a variant is selected by one of `patterns` (`name`, `labNN_x/name`, globs)."""
    return any(fnmatch(path.stem, p) or fnmatch(f"{lab.name}/{path.stem}", p) for p in patterns)


def apply(variant: Variant, dest: Path) -> str | None:
    """Copy the lab's solution/ to `dest` and apply the variant; return an error or None."""
    shutil.copytree(variant.lab / "solution", dest, ignore=IGNORED)
    proc = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--fuzz=0", "--no-backup-if-mismatch",
         "--reject-file=-", "-d", str(dest)],
        input=variant.diff, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        said = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return "the patch does not apply to solution/: " + " / ".join(said)
    return None


@dataclass
class VariantOutcome:
    variant: Variant | None
    path: Path
    ok: bool
    seconds: float = 0.0
    # task -> points lost there (only tasks that lost points)
    lost: dict[str, float] = field(default_factory=dict)
    problem: str = ""

    @property
    def lost_on_task(self) -> float:
        return self.lost.get(self.variant.task, 0.0) if self.variant else 0.0

    @property
    def lost_elsewhere(self) -> dict[str, float]:
        task = self.variant.task if self.variant else None
        return {t: p for t, p in self.lost.items() if t != task}


def task_of(entry_name: str) -> str:
    """The task of a results.json entry, whose name is `<task>: <test name>`."""
    return entry_name.rsplit(": ", 1)[0]


def check_variant(
    path: Path, lab: Path, timeout: float = 60, *, full: bool = False
) -> VariantOutcome:
    """Grade one variant like a submission and judge whether the tests caught it."""
    started = time.monotonic()
    try:
        variant = parse(path, lab)
    except (VariantError, OSError) as exc:  # OSError: renamed or removed since it was listed
        return VariantOutcome(None, path, False, problem=str(exc))
    with tempfile.TemporaryDirectory(prefix=f"hl-variant-{variant.name}-") as tmp:
        impl = Path(tmp) / "impl"
        if error := apply(variant, impl):
            return VariantOutcome(variant, path, False, time.monotonic() - started, {}, error)
        extra = () if full else ("--grade-task", variant.task, "--maxfail=1")
        graded = grade(lab, impl, timeout=timeout, extra=extra)
    seconds = time.monotonic() - started
    if graded.data is None and "is no task of these tests" in graded.output:
        said = next(ln for ln in graded.output.splitlines() if "is no task" in ln)
        problem = f"`# task: {variant.task}` is no task of the lab: " + said.split("; ", 1)[-1]
        return VariantOutcome(variant, path, False, seconds, {}, problem)
    if graded.data is None:
        problem = f"{graded.note}; pytest said:\n{graded.tail()}"
        return VariantOutcome(variant, path, False, seconds, {}, problem)
    lost: dict[str, float] = defaultdict(float)
    for entry in graded.tests:
        if entry.get("output") == "not run":  # after --maxfail stopped the run
            continue
        missing = float(entry["max_score"]) - float(entry["score"])
        if missing > 0:
            lost[task_of(entry["name"])] += missing
    outcome = VariantOutcome(variant, path, False, seconds, dict(lost))
    tasks = {task_of(entry["name"]) for entry in graded.tests}
    if variant.task not in tasks:
        known = "; ".join(sorted(t for t in tasks if not t.startswith("Regression ")))
        outcome.problem = f"`# task: {variant.task}` is no task of the lab ({known})"
    elif not lost:
        outcome.problem = "survived: it keeps full marks, no test catches it"
    elif not outcome.lost_on_task:
        outcome.problem = "loses points only on other tasks, none on its own"
    else:
        outcome.ok = True
    return outcome
