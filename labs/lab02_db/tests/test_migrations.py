"""Lab 2 tasks 1 and 5: the Alembic migrations build the schema, and the index pays off.

The migrations run on a database of their own, step by step, exactly as an operator would:

    upgrade +1     the first migration: the items table with named constraints
    (100,000 rows are inserted and ANALYZEd here, so the planner sees a realistic table)
    upgrade head   the second migration: the index for the filter query
    downgrade -1   the index is gone again
    downgrade base the table is gone
    upgrade head   and everything comes back

After each step the test records what PostgreSQL reports (columns, constraints, indexes, and
EXPLAIN of the filter query); each graded test then checks one part of that record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.testing.namespaces import temporary_database
from shared.testing.server import run_in_impl

TASK_SCHEMA = "1. Model and first migration"
TASK_INDEX = "5. An index for the filter query"

INDEX_NAME = "ix_items_category_price"
ROWS = 100_000
# The list's filter query as the API runs it for
# GET /items?category=books&min_price=100&max_price=120&sort=price
FILTER_QUERY = (
    "SELECT id, name, price, description, category FROM items "
    "WHERE category = 'books' AND price >= 100 AND price <= 120 "
    "ORDER BY price, id LIMIT 20"
)
# 20 categories and prices spread evenly over 1..1000: the query matches 0.1% of the table.
FILL = f"""
INSERT INTO items (name, price, description, category)
SELECT 'seeded item ' || g, round((1 + random() * 999)::numeric, 2), 'filler',
       (ARRAY['books', 'kitchen', 'toys', 'garden', 'music', 'sports', 'office', 'pets',
              'beauty', 'tools', 'travel', 'clothing', 'shoes', 'games', 'food', 'baby',
              'auto', 'art', 'health', 'phones'])[1 + g % 20]
FROM generate_series(1, {ROWS}) AS g
"""


@dataclass
class Walk:
    """What each step of the migration walk did and what the database looked like after."""

    errors: dict[str, str] = field(default_factory=dict)
    columns: dict[str, tuple[str, str, int | None]] = field(default_factory=dict)
    identity: list[str] = field(default_factory=list)  # identity columns
    price_type: tuple[int | None, int | None] = (None, None)  # numeric precision and scale
    index_columns: list[str] = field(default_factory=list)  # of INDEX_NAME at head
    constraints: dict[str, str] = field(default_factory=dict)
    bad_rows_accepted: list[str] = field(default_factory=list)
    indexes: dict[str, list[str]] = field(default_factory=dict)  # step -> index names
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> EXPLAIN JSON
    tables_after_base: list[str] = field(default_factory=list)

    def require(self, *steps: str) -> None:
        """Fail with the first error among `steps` (a test cannot check what never ran)."""
        for step in steps:
            if step in self.errors:
                pytest.fail(f"{step} failed: {self.errors[step]}", pytrace=False)


def alembic(impl_dir: Path, url: str, *args: str) -> str | None:
    """Run alembic in the implementation; return None, or the tail of its output on failure."""
    result = run_in_impl(impl_dir, ["-m", "alembic", *args], {"DATABASE_URL": url})
    if result.returncode == 0:
        return None
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])


def index_names(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'items'").fetchall()
    return sorted(r[0] for r in rows)


def explain(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {FILTER_QUERY}").fetchone()
    assert row is not None, f"EXPLAIN answered nothing for {FILTER_QUERY}"
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def indexed_columns(conn: psycopg.Connection, index: str) -> list[str]:
    """The columns of `index`, in index order (empty if there is no such index)."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE c.relname = %s ORDER BY k.position",
        (index,),
    ).fetchall()
    return [r[0] for r in rows]


def uses_index(plan: dict[str, Any]) -> bool:
    return any(node.get("Index Name") == INDEX_NAME for node in plan_nodes(plan))


def describe(plan: dict[str, Any]) -> str:
    """The plan's node types in one line, e.g. 'Limit > Sort > Seq Scan'."""
    parts = []
    for node in plan_nodes(plan):
        name = node["Node Type"]
        if "Index Name" in node:
            name += f" using {node['Index Name']}"
        parts.append(name)
    return " > ".join(parts)


def record_schema(conn: psycopg.Connection, walk: Walk) -> None:
    for name, data_type, nullable, length, identity, precision, scale in conn.execute(
        "SELECT column_name, data_type, is_nullable, character_maximum_length, is_identity, "
        "numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_name = 'items'"
    ).fetchall():
        walk.columns[name] = (data_type, nullable, length)
        if identity == "YES":
            walk.identity.append(name)
        if name == "price":
            walk.price_type = (precision, scale)
    for name, kind in conn.execute(
        "SELECT conname, contype FROM pg_constraint WHERE conrelid = 'items'::regclass"
    ).fetchall():
        walk.constraints[name] = kind
    # Rows the database itself must refuse, whatever the app does, with the SQLSTATE of the
    # constraint that refuses them.
    bad = {
        "a second item with the same name": (
            "INSERT INTO items (name, price) VALUES ('twin', 1), ('twin', 2)",
            "23505",  # unique_violation
        ),
        "a negative price": (
            "INSERT INTO items (name, price) VALUES ('negative', -1)",
            "23514",  # check_violation
        ),
        "an item without a price": ("INSERT INTO items (name) VALUES ('no price')", "23502"),
        "an item without a name": ("INSERT INTO items (price) VALUES (1)", "23502"),
    }
    for what, (statement, sqlstate) in bad.items():
        try:
            with conn.transaction():
                conn.execute(statement)
                raise _Rollback
        except _Rollback:
            walk.bad_rows_accepted.append(what)
        except psycopg.Error as exc:
            if exc.sqlstate != sqlstate:
                walk.bad_rows_accepted.append(f"{what} (got {exc.sqlstate}: {exc})")


class _Rollback(Exception):
    """Leave a transaction without keeping its rows."""


def migration_walk(impl_dir: Path, url: str) -> Walk:
    walk = Walk()
    if error := alembic(impl_dir, url, "upgrade", "+1"):
        walk.errors["alembic upgrade +1 (the first migration)"] = error
        return walk
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            record_schema(conn, walk)
            conn.execute(FILL)
            conn.execute("ANALYZE items")
            walk.indexes["first"] = index_names(conn)
            walk.plans["first"] = explain(conn)
        except psycopg.Error as exc:
            walk.errors["filling the table of the first migration"] = str(exc).strip()
            return walk
        steps = [
            ("alembic upgrade head (the second migration)", ("upgrade", "head"), "head"),
            ("alembic downgrade -1", ("downgrade", "-1"), "downgraded"),
        ]
        for label, args, key in steps:
            if error := alembic(impl_dir, url, *args):
                walk.errors[label] = error
                return walk
            try:
                walk.indexes[key] = index_names(conn)
                walk.plans[key] = explain(conn)
                if key == "head":
                    walk.index_columns = indexed_columns(conn, INDEX_NAME)
            except psycopg.Error as exc:
                walk.errors[label] = (
                    f"afterwards the items table cannot be queried ({exc}); each migration "
                    "must undo only its own change"
                )
                return walk
        if error := alembic(impl_dir, url, "downgrade", "base"):
            walk.errors["alembic downgrade base"] = error
            return walk
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        ).fetchall()
        walk.tables_after_base = [r[0] for r in rows]
        if error := alembic(impl_dir, url, "upgrade", "head"):
            walk.errors["alembic upgrade head after downgrade base"] = error
            return walk
        walk.indexes["again"] = index_names(conn)
    return walk


@pytest.fixture(scope="session")
def walk(impl_dir: Path, database_url: str, run_id: str) -> Iterator[Walk]:
    with temporary_database(database_url, run_id, "_migrations") as url:
        yield migration_walk(impl_dir, url)


# --------------------------------------------------------------------------- 1. schema


@pytest.mark.points(8, task=TASK_SCHEMA)
def test_first_migration_creates_the_items_table(walk: Walk) -> None:
    walk.require("alembic upgrade +1 (the first migration)")
    expected = {
        "id": ("integer", "NO", None),
        "name": ("character varying", "NO", 100),
        "price": ("numeric", "NO", None),
        "description": ("character varying", "YES", 1000),
        "category": ("character varying", "YES", 50),
    }
    assert walk.columns, "the first migration must create a table named `items`"
    for column, (data_type, nullable, length) in expected.items():
        got = walk.columns.get(column)
        assert got is not None, (
            f"the items table needs a column `{column}`; it has {sorted(walk.columns)}"
        )
        assert got[0] in (data_type, "bigint" if data_type == "integer" else data_type), (
            f"column `{column}` must be of type {data_type}, got {got[0]}"
        )
        assert got[1] == nullable, (
            f"column `{column}` must be {'nullable' if nullable == 'YES' else 'NOT NULL'} "
            "(Mapped[str] is NOT NULL, Mapped[str | None] is nullable)"
        )
        assert length is None or got[2] == length, (
            f"column `{column}` must be String({length}) like the API's limit, got length {got[2]}"
        )
    assert walk.identity == ["id"], (
        f"`id` must be an identity column (sa.Identity(); PostgreSQL assigns ids), not a serial "
        f"with a sequence of its own; identity columns: {walk.identity}"
    )
    assert walk.price_type == (10, 2), (
        f"`price` must be NUMERIC(10, 2) (stored with cents), got precision and scale "
        f"{walk.price_type}"
    )
    walk.require("filling the table of the first migration")


@pytest.mark.points(6, task=TASK_SCHEMA)
def test_constraints_have_conventional_names(walk: Walk) -> None:
    walk.require("alembic upgrade +1 (the first migration)")
    expected = {
        "pk_items": ("p", "the primary key"),
        "uq_items_name": ("u", "the unique constraint on name"),
        "ck_items_price_non_negative": ("c", "the check constraint price >= 0"),
    }
    for name, (kind, what) in expected.items():
        assert walk.constraints.get(name) == kind, (
            f"{what} must be named `{name}` (set the naming convention on the MetaData); the "
            f"table has the constraints {sorted(walk.constraints)}"
        )


@pytest.mark.points(4, task=TASK_SCHEMA)
def test_database_refuses_bad_rows(walk: Walk) -> None:
    walk.require("alembic upgrade +1 (the first migration)")
    assert not walk.bad_rows_accepted, (
        f"the table itself must refuse {', '.join(walk.bad_rows_accepted)}: "
        "NOT NULL, UNIQUE and CHECK constraints protect the data from every client, not only "
        "from your API"
    )


# --------------------------------------------------------------------------- 5. index


@pytest.mark.points(6, task=TASK_INDEX)
def test_second_migration_creates_the_index(walk: Walk) -> None:
    walk.require(
        "alembic upgrade +1 (the first migration)",
        "filling the table of the first migration",
        "alembic upgrade head (the second migration)",
    )
    assert INDEX_NAME not in walk.indexes["first"], (
        f"the index `{INDEX_NAME}` must come with the second migration, not the first one"
    )
    assert INDEX_NAME in walk.indexes["head"], (
        f"after `alembic upgrade head` the table must have the index `{INDEX_NAME}` on "
        f"(category, price); it has {walk.indexes['head']}"
    )
    assert walk.index_columns == ["category", "price"], (
        f"`{INDEX_NAME}` must index (category, price) in that order (the column compared "
        f"with = first, the range column second), got {walk.index_columns}"
    )


@pytest.mark.points(10, task=TASK_INDEX)
def test_filter_query_uses_the_index_only_after_the_migration(walk: Walk) -> None:
    walk.require(
        "alembic upgrade +1 (the first migration)",
        "filling the table of the first migration",
        "alembic upgrade head (the second migration)",
    )
    before, after = walk.plans["first"], walk.plans["head"]
    assert not uses_index(before), f"before the index exists the plan cannot use it: {before}"
    assert uses_index(after), (
        f"on {ROWS:,} rows, after the second migration the filter query must use "
        f"`{INDEX_NAME}` (an index on (category, price), equality column first); the plan is "
        f"{describe(after)}"
    )
    assert describe(before) != describe(after), "the plan must change when the index appears"


@pytest.mark.points(6, task=TASK_INDEX)
def test_migrations_downgrade_and_upgrade_again(walk: Walk) -> None:
    walk.require(
        "alembic upgrade +1 (the first migration)",
        "filling the table of the first migration",
        "alembic upgrade head (the second migration)",
        "alembic downgrade -1",
    )
    assert INDEX_NAME not in walk.indexes["downgraded"], (
        "`alembic downgrade -1` must drop the index again (write downgrade())"
    )
    assert not uses_index(walk.plans["downgraded"]), "after the downgrade the plan is as before"
    walk.require("alembic downgrade base")
    assert walk.tables_after_base == [], (
        f"`alembic downgrade base` must drop every table, left {walk.tables_after_base}"
    )
    walk.require("alembic upgrade head after downgrade base")
    assert INDEX_NAME in walk.indexes["again"], "upgrade head after downgrade base must work"
