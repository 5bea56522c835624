"""CRUD routes of /items: thin wrappers that validate, call the repository and shape the answer.

The routes are plain `def` functions: FastAPI runs them in a thread pool, each with its own
database session from `SessionDep`. (Lab 4 turns them into `async def`.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app import repository
from app.api.deps import SessionDep
from app.schemas import ErrorResponse, Item, ItemCreate, ItemPatch, ItemQuery

router = APIRouter(prefix="/items", tags=["items"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "No such item"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"model": ErrorResponse, "description": "The name is taken"}
}


@router.get("")
def list_items(
    session: SessionDep, query: Annotated[ItemQuery, Query()], response: Response
) -> list[Item]:
    """Return one page of the matching items; `X-Total-Count` holds how many match in all."""
    items, total = repository.list_items(session=session, query=query)
    response.headers["X-Total-Count"] = str(total)
    return items


@router.post("", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_item(session: SessionDep, data: ItemCreate, response: Response) -> Item:
    """Create an item; `Location` points to it."""
    item = repository.create_item(session=session, data=data)
    response.headers["Location"] = f"/items/{item.id}"
    return item


@router.get("/{item_id}", responses=NOT_FOUND)
def get_item(session: SessionDep, item_id: int) -> Item:
    return repository.get_item(session=session, item_id=item_id)


@router.put("/{item_id}", responses={**NOT_FOUND, **CONFLICT})
def replace_item(session: SessionDep, item_id: int, data: ItemCreate) -> Item:
    """Replace the whole item: optional fields left out become null."""
    return repository.replace_item(session=session, item_id=item_id, data=data)


@router.patch("/{item_id}", responses={**NOT_FOUND, **CONFLICT})
def update_item(session: SessionDep, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields in the body."""
    return repository.update_item(session=session, item_id=item_id, data=data)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
def delete_item(session: SessionDep, item_id: int) -> None:
    repository.delete_item(session=session, item_id=item_id)
