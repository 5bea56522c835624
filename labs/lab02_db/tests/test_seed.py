"""Lab 2 task 4: `python -m app.seed --rows 100000` fills the table quickly with realistic rows.

The seed command runs on a database of its own (migrated to head), as a student would run it
before a benchmark, and then once more with `--rows 1000` on the filled table. Its speed is not
graded here (the handout's bench shows it); what it loads and what it prints are. What the
table looked like after each run is recorded by the fixture, so the tests can run in any order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.testing.namespaces import temporary_database
from shared.testing.server import run_in_impl

TASK_SEED = "4. Seed 100,000 rows"
ROWS = 100_000
MORE = 1000  # the second run's --rows, on the filled table

STATS = (
    "SELECT count(*), count(DISTINCT name), count(DISTINCT category), count(DISTINCT price), "
    "min(price)::float8, max(price)::float8, count(DISTINCT split_part(name, ' ', 1)), "
    "(SELECT reltuples FROM pg_class WHERE relname = 'items') FROM items"
)


@dataclass
class SeedRun:
    returncode: int
    output: str
    # count, distinct names, categories, prices, min, max, first words, reltuples
    stats: tuple[Any, ...]
    again_returncode: int = -1  # the second run, `--rows 1000` on the filled table
    again_output: str = ""
    again_stats: tuple[Any, ...] = ()


def table_stats(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(STATS).fetchone()
    return tuple(row) if row else ()


@pytest.fixture(scope="session")
def seeded(impl_dir: Path, database_url: str, run_id: str) -> Iterator[SeedRun]:
    with temporary_database(database_url, run_id, "_seed") as url:
        env = {"DATABASE_URL": url}
        migrate = run_in_impl(impl_dir, ["-m", "alembic", "upgrade", "head"], env)
        if migrate.returncode != 0:
            pytest.fail(f"`alembic upgrade head` failed:\n{migrate.stderr[-800:]}", pytrace=False)
        result = run_in_impl(impl_dir, ["-m", "app.seed", "--rows", str(ROWS)], env, timeout=180)
        run = SeedRun(result.returncode, (result.stdout + result.stderr).strip(), table_stats(url))
        if result.returncode == 0:
            again = run_in_impl(impl_dir, ["-m", "app.seed", "--rows", str(MORE)], env)
            run.again_returncode = again.returncode
            run.again_output = (again.stdout + again.stderr).strip()
            run.again_stats = table_stats(url)
        yield run


@pytest.mark.points(6, task=TASK_SEED)
def test_seed_fills_the_table_and_reports(seeded: SeedRun) -> None:
    assert seeded.returncode == 0, (
        f"`python -m app.seed --rows {ROWS}` must exit with 0; it said:\n{seeded.output[-600:]}"
    )
    count = seeded.stats[0] if seeded.stats else 0
    assert count == ROWS, (
        f"`app.seed --rows {ROWS}` must add exactly {ROWS} rows to items, the table has {count}"
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
    assert seeded.stats and seeded.stats[0], "the seed must load rows first"
    categories, prices, low, high, first_words, reltuples = seeded.stats[2:]
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


@pytest.mark.points(2, task=TASK_SEED)
def test_seed_adds_rows_to_a_filled_table(seeded: SeedRun) -> None:
    assert seeded.returncode == 0, (
        f"`python -m app.seed --rows {ROWS}` must run first; it said:\n{seeded.output[-300:]}"
    )
    assert seeded.again_returncode == 0, (
        f"a second `python -m app.seed --rows {MORE}` on the filled table must work too (names "
        f"must stay unique: continue the numbering after the rows already there); it said:\n"
        f"{seeded.again_output[-400:]}"
    )
    count, names = seeded.again_stats[:2]
    assert count == ROWS + MORE and names == count, (
        f"`app.seed --rows {MORE}` on a table of {ROWS} rows must add exactly {MORE} rows with "
        f"new names: the table has {count} rows and {names} distinct names"
    )
