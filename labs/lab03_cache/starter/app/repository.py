"""Items in PostgreSQL: the same functions as lab 1's in-memory store, over a Session.

Every function takes the request's session and its data as keyword arguments, so the routes
kept their shape. Each write is one statement with `RETURNING` (the database says what it
stored, in one round trip) followed by `commit()`; when a statement fails, the session is
closed without a commit and PostgreSQL rolls the transaction back: nothing is half-written.
The lock of lab 1 is gone: PostgreSQL isolates concurrent transactions, and the identity
column hands out ids that never repeat.
"""

from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import DuplicateNameError, ItemNotFoundError
from app.models import ItemRow
from app.schemas import Item, ItemCreate, ItemPatch, ItemQuery, ItemStats, SortField

# Sort fields the API accepts -> columns; `id` breaks ties, so pages never overlap.
SORT_COLUMNS = {"id": ItemRow.id, "name": ItemRow.name, "price": ItemRow.price}


def list_items(*, session: Session, query: ItemQuery) -> tuple[list[Item], int]:
    """Return one page of the items that match the filters, and how many match in all."""
    conditions = _filters(query)
    page = (
        select(ItemRow)
        .where(*conditions)
        .order_by(*_order(query.sort))
        .limit(query.limit)
        .offset(query.offset)
    )
    total = session.scalar(select(func.count()).select_from(ItemRow).where(*conditions))
    return [to_item(row) for row in session.scalars(page)], int(total or 0)


def get_item(*, session: Session, item_id: int) -> Item:
    """Return the item, or raise ItemNotFoundError."""
    row = session.get(ItemRow, item_id)
    if row is None:
        raise ItemNotFoundError(item_id)
    return to_item(row)


def create_item(*, session: Session, data: ItemCreate) -> Item:
    """Insert a new item; the database assigns its id."""
    statement = insert(ItemRow).values(**data.model_dump()).returning(ItemRow)
    row = _write(session, statement, data.name)
    assert row is not None  # an INSERT ... RETURNING always returns its row
    return to_item(row)


def replace_item(*, session: Session, item_id: int, data: ItemCreate) -> Item:
    """Replace every field of the item (fields left out become null)."""
    return _update(session, item_id, data.model_dump(), data.name)


def update_item(*, session: Session, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields that were sent."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return get_item(session=session, item_id=item_id)
    return _update(session, item_id, changes, data.name)


def delete_item(*, session: Session, item_id: int) -> None:
    """Delete the item, or raise ItemNotFoundError."""
    deleted = session.scalar(delete(ItemRow).where(ItemRow.id == item_id).returning(ItemRow.id))
    if deleted is None:
        raise ItemNotFoundError(item_id)
    session.commit()


def item_stats(*, session: Session) -> ItemStats:
    """Count the items and summarise their prices per category (the expensive query).

    One SELECT ... GROUP BY category with count(*), min, max, avg and the percentiles
    (`func.percentile_cont(0.5).within_group(ItemRow.price)`); items without a category form
    a group of their own (category null), listed last.
    """
    raise NotImplementedError("TODO(lab 3): the stats query")


def to_item(row: ItemRow) -> Item:
    """Convert a row to the API's model."""
    return Item(
        id=row.id,
        name=row.name,
        price=row.price,
        description=row.description,
        category=row.category,
    )


def _update(session: Session, item_id: int, values: dict[str, Any], name: str | None) -> Item:
    # One UPDATE ... RETURNING: no read-then-write window in which another request could
    # change or delete the row.
    statement = update(ItemRow).where(ItemRow.id == item_id).values(**values).returning(ItemRow)
    row = _write(session, statement, name)
    if row is None:
        raise ItemNotFoundError(item_id)
    return to_item(row)


def _write(session: Session, statement: Any, name: str | None) -> ItemRow | None:
    """Run an INSERT/UPDATE ... RETURNING and commit; a taken name becomes a 409."""
    try:
        row: ItemRow | None = session.scalar(statement)
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if isinstance(exc.orig, pg_errors.UniqueViolation) and name is not None:
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
