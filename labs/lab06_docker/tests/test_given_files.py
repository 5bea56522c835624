"""The files the lab gives (no points): they must match what they are copies of.

Lab 6 packages lab 5's solution unchanged, plus a copy of the course's `shared/settings.py`
(so that the image builds from the lab's folder alone). When either original changes, these
checks fail until the copies are refreshed:

    for d in solution starter; do
      rsync -a --exclude __pycache__ labs/lab05_queue/solution/ labs/lab06_docker/$d/
      cp shared/__init__.py shared/settings.py labs/lab06_docker/$d/shared/
    done
"""

from __future__ import annotations

from pathlib import Path

from labs.lab06_docker.tests.engine import REPO_ROOT

LAB5_SOLUTION = REPO_ROOT / "labs" / "lab05_queue" / "solution"


def test_given_files_match_their_originals(impl_dir: Path) -> None:
    originals = {f"shared/{n}": REPO_ROOT / "shared" / n for n in ("__init__.py", "settings.py")}
    # In the student release lab 5's solution is not there: only the settings copy is checked.
    if LAB5_SOLUTION.is_dir():
        for path in sorted(LAB5_SOLUTION.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                originals[str(path.relative_to(LAB5_SOLUTION))] = path
    stale = [
        name
        for name, original in originals.items()
        if not (impl_dir / name).is_file()
        or (impl_dir / name).read_bytes() != original.read_bytes()
    ]
    assert not stale, (
        f"{len(stale)} given file(s) in {impl_dir.name}/ differ from their originals "
        f"({', '.join(stale[:4])}): refresh them (see this module's docstring)"
    )
