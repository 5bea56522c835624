"""Lab 2 fixtures: the server under test runs on a fresh PostgreSQL database.

Before the server starts, `alembic upgrade head` (the implementation's own migrations) creates
the schema in the run's database; the app never creates tables itself. Tests that walk the
migrations up and down, or seed 100,000 rows, use databases of their own so the server's data
stays as the contract tests left it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.testing.server import migrate_impl


@pytest.fixture(scope="session")
def app_env(impl_dir: Path, database_url: str) -> dict[str, str]:
    env = {"DATABASE_URL": database_url}
    migrate_impl(impl_dir, env)
    return env
