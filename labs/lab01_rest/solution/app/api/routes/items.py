"""CRUD routes of /items: thin wrappers that validate, call the repository and shape the answer.

The routes are plain `def` functions: FastAPI runs them in a thread pool, which is why the
repository needs its lock. (Lab 4 turns them into `async def`.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app import repository
from app.api.deps import RepoDep
from app.schemas import ErrorResponse, Item, ItemCreate, ItemPatch, PageParams

router = APIRouter(prefix="/items", tags=["items"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "No such item"}
}


@router.get("")
def list_items(
    repo: RepoDep, page: Annotated[PageParams, Query()], response: Response
) -> list[Item]:
    """Return one page of items in id order; `X-Total-Count` holds the number of all items."""
    items, total = repository.list_items(repo=repo, limit=page.limit, offset=page.offset)
    response.headers["X-Total-Count"] = str(total)
    return items


@router.post("", status_code=status.HTTP_201_CREATED)
def create_item(repo: RepoDep, data: ItemCreate, response: Response) -> Item:
    """Create an item; `Location` points to it."""
    item = repository.create_item(repo=repo, data=data)
    response.headers["Location"] = f"/items/{item.id}"
    return item


@router.get("/{item_id}", responses=NOT_FOUND)
def get_item(repo: RepoDep, item_id: int) -> Item:
    return repository.get_item(repo=repo, item_id=item_id)


@router.put("/{item_id}", responses=NOT_FOUND)
def replace_item(repo: RepoDep, item_id: int, data: ItemCreate) -> Item:
    """Replace the whole item: optional fields left out become null."""
    return repository.replace_item(repo=repo, item_id=item_id, data=data)


@router.patch("/{item_id}", responses=NOT_FOUND)
def update_item(repo: RepoDep, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields in the body."""
    return repository.update_item(repo=repo, item_id=item_id, data=data)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
def delete_item(repo: RepoDep, item_id: int) -> None:
    repository.delete_item(repo=repo, item_id=item_id)
