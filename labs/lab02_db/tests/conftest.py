"""Lab 2 fixtures: the server under test runs on a fresh PostgreSQL database.

Before the server starts, `alembic upgrade head` (the implementation's own migrations) creates
the schema in the run's database; the app never creates tables itself. Tests that walk the
migrations up and down, or seed 100,000 rows, use databases of their own so the server's data
stays as the contract tests left it.

Lab 1's contract is re-run here with the same points (REGRESSION, see
`shared/testing/regression.py`): the API must behave as before, now on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.testing.server import migrate_impl

# Modules later labs re-run, and the earlier labs whose contract this lab re-runs.
CONTRACT = ("test_contract.py",)
REGRESSION = ("lab01_rest",)


@pytest.fixture(scope="session")
def app_env(impl_dir: Path, database_url: str) -> dict[str, str]:
    env = {"DATABASE_URL": database_url}
    migrate_impl(impl_dir, env)
    return env
