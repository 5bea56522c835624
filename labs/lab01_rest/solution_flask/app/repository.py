"""The item store: a dict in memory, guarded by a lock.

Every function takes its store and data as keyword arguments, so that lab 2 can swap the
store for a database session without touching the routes' shape. The lock matters: the
server answers requests from several threads, and `next id + insert` must not interleave.
"""

import itertools
import threading

from app.errors import ItemNotFoundError
from app.schemas import Item, ItemCreate, ItemPatch


class ItemStore:
    """Items by id, in id order (ids only grow, and a dict keeps insertion order)."""

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)


def list_items(*, repo: ItemStore, limit: int, offset: int) -> tuple[list[Item], int]:
    """Return one page of items in id order, and the total number of items."""
    with repo.lock:
        page = list(itertools.islice(repo.items.values(), offset, offset + limit))
        return page, len(repo.items)


def get_item(*, repo: ItemStore, item_id: int) -> Item:
    """Return the item, or raise ItemNotFoundError."""
    with repo.lock:
        return _get(repo, item_id)


def create_item(*, repo: ItemStore, data: ItemCreate) -> Item:
    """Store a new item under a fresh id and return it."""
    with repo.lock:
        item = Item(id=repo.next_id(), **data.model_dump())
        repo.items[item.id] = item
        return item


def replace_item(*, repo: ItemStore, item_id: int, data: ItemCreate) -> Item:
    """Replace every field of the item (fields left out become null)."""
    with repo.lock:
        _get(repo, item_id)
        item = Item(id=item_id, **data.model_dump())
        repo.items[item_id] = item
        return item


def update_item(*, repo: ItemStore, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields that were sent."""
    with repo.lock:
        current = _get(repo, item_id)
        changes = data.model_dump(exclude_unset=True)
        item = Item.model_validate({**current.model_dump(), **changes})
        repo.items[item_id] = item
        return item


def delete_item(*, repo: ItemStore, item_id: int) -> None:
    """Delete the item, or raise ItemNotFoundError."""
    with repo.lock:
        _get(repo, item_id)
        del repo.items[item_id]


def _get(repo: ItemStore, item_id: int) -> Item:
    try:
        return repo.items[item_id]
    except KeyError:
        raise ItemNotFoundError(item_id) from None
