"""Where a lab lives and which of its implementations runs by default.

A lab is a folder `labs/labNN_name/` with `starter/`, `solution*/` (absent from the student
release) and `tests/`. Grading, benches and `make serve` all default to the reference solution
when it is there and to the starter otherwise, so the same command works in both copies.
"""

from __future__ import annotations

import re
from pathlib import Path

LAB_NAME = re.compile(r"lab\d\d_\w+")


def lab_dir_of(path: Path) -> Path | None:
    """Return the `labs/labNN_*` folder that contains `path`, or None."""
    for parent in path.resolve().parents:
        if parent.parent.name == "labs" and LAB_NAME.fullmatch(parent.name):
            return parent
    return None


def default_impl(lab_dir: Path) -> Path:
    """The lab's `solution/` if present, else its `starter/`."""
    solution = lab_dir / "solution"
    return solution if solution.is_dir() else lab_dir / "starter"
