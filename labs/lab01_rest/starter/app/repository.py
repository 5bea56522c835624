"""The item store: a dict in memory, guarded by a lock.

Every function takes its store and data as keyword arguments, so that lab 2 can swap the
store for a database session without touching the routes' shape. The lock matters: the
server answers requests from several threads, and `next id + insert` must not interleave.
"""

import itertools
import threading

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
    raise NotImplementedError("TODO(lab 1): return items[offset:offset + limit] and the total")


def get_item(*, repo: ItemStore, item_id: int) -> Item:
    """Return the item, or raise ItemNotFoundError."""
    # `raise ItemNotFoundError(item_id)` (from app.errors) becomes a 404 with a JSON detail.
    raise NotImplementedError("TODO(lab 1): look the item up; raise ItemNotFoundError if absent")


def create_item(*, repo: ItemStore, data: ItemCreate) -> Item:
    """Store a new item under a fresh id and return it."""
    # Hold `repo.lock` while you take the next id and insert: two requests at once must
    # never get the same id.
    raise NotImplementedError("TODO(lab 1): store a new item under repo.next_id()")


def replace_item(*, repo: ItemStore, item_id: int, data: ItemCreate) -> Item:
    """Replace every field of the item (fields left out become null)."""
    raise NotImplementedError("TODO(lab 1): replace the item, keep its id")


def update_item(*, repo: ItemStore, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields that were sent."""
    # Hint: data.model_dump(exclude_unset=True) holds only the fields the client sent.
    raise NotImplementedError("TODO(lab 1): update only the fields that were sent")


def delete_item(*, repo: ItemStore, item_id: int) -> None:
    """Delete the item, or raise ItemNotFoundError."""
    raise NotImplementedError("TODO(lab 1): delete the item")
