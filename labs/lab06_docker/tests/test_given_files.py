"""The files the lab gives (no points): they must match what they are copies of."""

from __future__ import annotations

from pathlib import Path

from labs.lab06_docker.tests.engine import REPO_ROOT


def test_settings_copy_matches_the_course_settings(impl_dir: Path) -> None:
    """`shared/settings.py` is copied into the lab so the image builds from the folder alone."""
    for name in ("__init__.py", "settings.py"):
        copy = impl_dir / "shared" / name
        assert copy.is_file(), f"{copy} is missing: it is given, copy it from the course's shared/"
        assert copy.read_text() == (REPO_ROOT / "shared" / name).read_text(), (
            f"{copy} differs from shared/{name}: copy the course's file again"
        )
