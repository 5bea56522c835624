"""Items in PostgreSQL: the same functions as lab 1's in-memory store, over a Session.

Every function takes the request's session and its data as keyword arguments, so the routes
keep their shape. A write is not saved until `session.commit()`; a session closed without a
commit rolls back, so a request that fails half-way leaves nothing behind.

TODO(lab 2): write each function with SQLAlchemy 2.0 statements (select, insert, update,
delete; `.returning(ItemRow)` gives you the stored row back in the same round trip).
"""

from sqlalchemy.orm import Session

from app.models import ItemRow
from app.schemas import Item, ItemCreate, ItemPatch, ItemQuery


def list_items(*, session: Session, query: ItemQuery) -> tuple[list[Item], int]:
    """Return one page of the items that match the filters, and how many match in all."""
    # Filters: name_contains (ignore case; a "%" typed by the client is not a wildcard),
    # category, min_price, max_price. Order by query.sort, then by id so pages never overlap.
    raise NotImplementedError("TODO(lab 2): SELECT one filtered, sorted page and COUNT(*)")


def get_item(*, session: Session, item_id: int) -> Item:
    """Return the item, or raise ItemNotFoundError."""
    raise NotImplementedError("TODO(lab 2): session.get(ItemRow, item_id)")


def create_item(*, session: Session, data: ItemCreate) -> Item:
    """Insert a new item; the database assigns its id."""
    # A name that is taken makes the commit fail with IntegrityError (a UniqueViolation):
    # roll back and raise DuplicateNameError (409). Do not SELECT first: two requests race.
    raise NotImplementedError("TODO(lab 2): INSERT the item and commit")


def replace_item(*, session: Session, item_id: int, data: ItemCreate) -> Item:
    """Replace every field of the item (fields left out become null)."""
    raise NotImplementedError("TODO(lab 2): UPDATE every column and commit")


def update_item(*, session: Session, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields that were sent."""
    raise NotImplementedError("TODO(lab 2): UPDATE the columns that were sent and commit")


def delete_item(*, session: Session, item_id: int) -> None:
    """Delete the item, or raise ItemNotFoundError."""
    raise NotImplementedError("TODO(lab 2): DELETE the row and commit")


def to_item(row: ItemRow) -> Item:
    """Convert a row to the API's model."""
    raise NotImplementedError("TODO(lab 2): Item(id=row.id, name=row.name, ...)")
