"""Lab 2 task 4: `python -m app.seed --rows 100000` fills the table quickly with realistic rows.

The seed command runs on a database of its own (migrated to head), as a student would run it
before a benchmark. Its speed is not graded here (the handout's bench shows it); what it loads
and what it prints are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from shared.testing.namespaces import temporary_database
from shared.testing.server import run_in_impl

TASK_SEED = "4. Seed 100,000 rows"
ROWS = 100_000


@dataclass
class SeedRun:
    url: str
    returncode: int
    output: str


@pytest.fixture(scope="session")
def seeded(impl_dir: Path, database_url: str, run_id: str) -> Iterator[SeedRun]:
    with temporary_database(database_url, run_id, "_seed") as url:
        env = {"DATABASE_URL": url}
        migrate = run_in_impl(impl_dir, ["-m", "alembic", "upgrade", "head"], env)
        if migrate.returncode != 0:
            pytest.fail(f"`alembic upgrade head` failed:\n{migrate.stderr[-800:]}", pytrace=False)
        result = run_in_impl(impl_dir, ["-m", "app.seed", "--rows", str(ROWS)], env, timeout=180)
        yield SeedRun(url, result.returncode, (result.stdout + result.stderr).strip())


@pytest.mark.points(8, task=TASK_SEED)
def test_seed_fills_the_table_and_reports(seeded: SeedRun) -> None:
    assert seeded.returncode == 0, (
        f"`python -m app.seed --rows {ROWS}` must exit with 0; it said:\n{seeded.output[-600:]}"
    )
    with psycopg.connect(seeded.url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT name) FROM items").fetchone()
    assert row is not None and row[0] == ROWS, (
        f"`app.seed --rows {ROWS}` must add exactly {ROWS} rows to items, the table has "
        f"{row[0] if row else 0}"
    )
    assert re.search(r"\b100[ ,_]?000\b", seeded.output), (
        f"the seed command must print how many rows it loaded, it printed {seeded.output!r}"
    )
    assert re.search(r"\d+(\.\d+)?\s*(s|sec|seconds)\b", seeded.output), (
        f"the seed command must print how many seconds it took (e.g. '... in 1.23 s'), it "
        f"printed {seeded.output!r}"
    )


@pytest.mark.points(4, task=TASK_SEED)
def test_seed_rows_look_real(seeded: SeedRun) -> None:
    assert seeded.returncode == 0, (
        f"`python -m app.seed --rows {ROWS}` must run first; it said:\n{seeded.output[-300:]}"
    )
    with psycopg.connect(seeded.url) as conn:
        stats = conn.execute(
            "SELECT count(DISTINCT category), count(DISTINCT price), min(price)::float8, "
            "max(price)::float8, count(DISTINCT split_part(name, ' ', 1)), "
            "(SELECT reltuples FROM pg_class WHERE relname = 'items') FROM items"
        ).fetchone()
    assert stats is not None and stats[0] is not None, "the seed must load rows first"
    categories, prices, low, high, first_words, reltuples = stats
    assert categories >= 5, (
        f"seeded items must spread over several categories (5 or more), found {categories}"
    )
    assert prices >= 1000 and low is not None and low >= 0 and high > low, (
        f"seeded prices must vary (found {prices} distinct prices from {low} to {high})"
    )
    assert first_words >= 5, (
        f"seeded names must look like products ('Blue ceramic mug #123'), not 'item 1', "
        f"'item 2'...: found {first_words} distinct first words"
    )
    assert reltuples >= ROWS * 0.9, (
        "run ANALYZE after loading, so the planner knows the table has 100,000 rows "
        f"(pg_class.reltuples is {reltuples})"
    )
