"""Lab 3 fixtures: the server under test runs on a seeded PostgreSQL database and a real Redis.

Before the server starts, the implementation's migrations create the schema and 100,000 rows
are inserted (by SQL here, so a lab 2 seed command is not needed to grade lab 3); the stats
then have a realistic table to summarise. The server writes its keys under the run's
REDIS_PREFIX, which the tests read directly through `redis_client`.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from shared.testing.server import migrate_impl

ROWS = 100_000
SEED_SQL = f"""
INSERT INTO items (name, price, description, category)
SELECT 'seeded item ' || g,
       round((1 + random() * random() * 500)::numeric, 2),
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'seeded' END,
       CASE WHEN g % 25 = 0 THEN NULL ELSE
         (ARRAY['books', 'kitchen', 'toys', 'garden', 'electronics', 'clothing', 'sports',
                'beauty', 'office', 'pets'])[1 + (g * 7919) % 10] END
FROM generate_series(1, {ROWS}) AS g
"""


@pytest.fixture(scope="session")
def app_env(impl_dir: Path, database_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}
    migrate_impl(impl_dir, env, " (lab 2's migrations must work before lab 3 can be graded)")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SEED_SQL)
        conn.execute("ANALYZE items")
    return env
