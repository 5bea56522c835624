"""CRUD routes of /items: thin wrappers that validate, call the repository and shape the answer.

The routes are plain `def` functions: FastAPI runs them in a thread pool, which is why the
repository needs its lock. Each route is one or two lines once the repository works.

TODO(lab 1), see the handout for the contract of each route:
- GET /items: `limit` and `offset` query parameters, header `X-Total-Count`;
- POST /items: status 201 and a `Location: /items/{id}` header (`response: Response`);
- DELETE: status 204 and an empty body.
"""

from fastapi import APIRouter

from app.api.deps import RepoDep
from app.schemas import Item, ItemCreate, ItemPatch

router = APIRouter(prefix="/items", tags=["items"])


@router.get("")
def list_items(repo: RepoDep) -> list[Item]:
    """Return one page of items in id order; `X-Total-Count` holds the number of all items."""
    raise NotImplementedError("TODO(lab 1): GET /items (one page, X-Total-Count)")


@router.post("")
def create_item(repo: RepoDep, data: ItemCreate) -> Item:
    """Create an item; `Location` points to it."""
    raise NotImplementedError("TODO(lab 1): POST /items (201 and Location)")


@router.get("/{item_id}")
def get_item(repo: RepoDep, item_id: int) -> Item:
    raise NotImplementedError("TODO(lab 1): GET /items/{item_id}")


@router.put("/{item_id}")
def replace_item(repo: RepoDep, item_id: int, data: ItemCreate) -> Item:
    """Replace the whole item: optional fields left out become null."""
    raise NotImplementedError("TODO(lab 1): PUT /items/{item_id}")


@router.patch("/{item_id}")
def update_item(repo: RepoDep, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields in the body."""
    raise NotImplementedError("TODO(lab 1): PATCH /items/{item_id}")


@router.delete("/{item_id}")
def delete_item(repo: RepoDep, item_id: int) -> None:
    raise NotImplementedError("TODO(lab 1): DELETE /items/{item_id} (204, empty body)")
