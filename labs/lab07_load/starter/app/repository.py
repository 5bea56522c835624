"""Items in PostgreSQL, async: lab 3's functions over an AsyncSession.

What changed from lab 3: `await` before every call that reaches the database
(`session.get/scalar/scalars/execute/commit/rollback`), and a unique violation is recognised
by its SQLSTATE, because asyncpg raises its own exception classes, not psycopg's.

Every function takes the request's session and its data as keyword arguments, so the routes
kept their shape. Each write is one statement with `RETURNING` (the database says what it
stored, in one round trip) followed by `commit()`; when a statement fails, the session is
closed without a commit and PostgreSQL rolls the transaction back: nothing is half-written.
The lock of lab 1 is gone: PostgreSQL isolates concurrent transactions, and the identity
column hands out ids that never repeat.
"""

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import DuplicateNameError, ItemNotFoundError
from app.models import ItemRow
from app.schemas import CategoryStats, Item, ItemCreate, ItemPatch, ItemQuery, ItemStats, SortField

UNIQUE_VIOLATION = "23505"

# Sort fields the API accepts -> columns; `id` breaks ties, so pages never overlap.
SORT_COLUMNS = {"id": ItemRow.id, "name": ItemRow.name, "price": ItemRow.price}


async def list_items(*, session: AsyncSession, query: ItemQuery) -> tuple[list[Item], int]:
    """Return one page of the items that match the filters, and how many match in all."""
    conditions = _filters(query)
    page = (
        select(ItemRow)
        .where(*conditions)
        .order_by(*_order(query.sort))
        .limit(query.limit)
        .offset(query.offset)
    )
    total = await session.scalar(select(func.count()).select_from(ItemRow).where(*conditions))
    rows = (await session.scalars(page)).all()
    return [to_item(row) for row in rows], int(total or 0)


async def get_item(*, session: AsyncSession, item_id: int) -> Item:
    """Return the item, or raise ItemNotFoundError."""
    row = await session.get(ItemRow, item_id)
    if row is None:
        raise ItemNotFoundError(item_id)
    return to_item(row)


async def create_item(*, session: AsyncSession, data: ItemCreate) -> Item:
    """Insert a new item; the database assigns its id."""
    statement = insert(ItemRow).values(**data.model_dump()).returning(ItemRow)
    row = await _write(session, statement, data.name)
    assert row is not None  # an INSERT ... RETURNING always returns its row
    return to_item(row)


async def replace_item(*, session: AsyncSession, item_id: int, data: ItemCreate) -> Item:
    """Replace every field of the item (fields left out become null)."""
    return await _update(session, item_id, data.model_dump(), data.name)


async def update_item(*, session: AsyncSession, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields that were sent."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return await get_item(session=session, item_id=item_id)
    return await _update(session, item_id, changes, data.name)


async def delete_item(*, session: AsyncSession, item_id: int) -> None:
    """Delete the item, or raise ItemNotFoundError."""
    deleted = await session.scalar(
        delete(ItemRow).where(ItemRow.id == item_id).returning(ItemRow.id)
    )
    if deleted is None:
        raise ItemNotFoundError(item_id)
    await session.commit()


async def item_stats(*, session: AsyncSession) -> ItemStats:
    """Count the items and summarise their prices per category (the expensive query)."""
    rows = await session.execute(_stats_statement())
    categories = [_category_stats(*row) for row in rows]
    return ItemStats(
        total=sum(c.count for c in categories),
        categories=categories,
        computed_at=dt.datetime.now(dt.UTC),
    )


def _stats_statement() -> Any:
    """One SELECT ... GROUP BY category: count, min, max, avg and percentiles of the prices.

    percentile_cont sorts every category's prices: on 100,000 rows this reads and sorts the
    whole table, which is exactly what the cache is for.
    """
    price = ItemRow.price

    def percentile(fraction: float) -> Any:
        return func.percentile_cont(fraction).within_group(price)

    return (
        select(
            ItemRow.category,
            func.count(),
            func.min(price),
            func.max(price),
            func.avg(price),
            percentile(0.5),
            percentile(0.9),
            percentile(0.99),
        )
        .group_by(ItemRow.category)
        .order_by(ItemRow.category.asc().nulls_last())
    )


def _category_stats(
    category: str | None, count: int, low: Any, high: Any, avg: Any, *percentiles: Any
) -> CategoryStats:
    """One row of `_stats_statement()` as the API's model."""
    p50, p90, p99 = percentiles
    return CategoryStats(
        category=category,
        count=count,
        min_price=_money(low),
        max_price=_money(high),
        avg_price=_money(avg),
        p50_price=_money(p50),
        p90_price=_money(p90),
        p99_price=_money(p99),
    )


def _money(value: Any) -> float:
    return round(float(value), 2)


def to_item(row: ItemRow) -> Item:
    """Convert a row to the API's model."""
    return Item(
        id=row.id,
        name=row.name,
        price=row.price,
        description=row.description,
        category=row.category,
    )


async def _update(
    session: AsyncSession, item_id: int, values: dict[str, Any], name: str | None
) -> Item:
    # One UPDATE ... RETURNING: no read-then-write window in which another request could
    # change or delete the row.
    statement = update(ItemRow).where(ItemRow.id == item_id).values(**values).returning(ItemRow)
    row = await _write(session, statement, name)
    if row is None:
        raise ItemNotFoundError(item_id)
    return to_item(row)


async def _write(session: AsyncSession, statement: Any, name: str | None) -> ItemRow | None:
    """Run an INSERT/UPDATE ... RETURNING and commit; a taken name becomes a 409."""
    try:
        row: ItemRow | None = await session.scalar(statement)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        # asyncpg's errors carry PostgreSQL's SQLSTATE; 23505 is unique_violation.
        if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION and name is not None:
            raise DuplicateNameError(name) from exc
        raise
    return row


def _filters(query: ItemQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.name_contains is not None:
        # autoescape: a "%" or "_" typed by the client is a character, not a wildcard.
        conditions.append(ItemRow.name.icontains(query.name_contains, autoescape=True))
    if query.category is not None:
        conditions.append(ItemRow.category == query.category)
    if query.min_price is not None:
        conditions.append(ItemRow.price >= query.min_price)
    if query.max_price is not None:
        conditions.append(ItemRow.price <= query.max_price)
    return conditions


def _order(sort: SortField) -> list[ColumnElement[Any]]:
    column = SORT_COLUMNS[sort.removeprefix("-")]
    first = column.desc() if sort.startswith("-") else column.asc()
    return [first] if column is ItemRow.id else [first, ItemRow.id.asc()]
