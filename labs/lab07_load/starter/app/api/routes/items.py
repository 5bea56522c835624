"""CRUD routes of /items: thin wrappers that validate, call the service and shape the answer.

Reads go through the cache (`app/service.py`) and say where their answer came from in the
header `X-Cache: HIT|MISS`; they return the cached JSON bytes as they are, without parsing
them again. Writes go to the database, then invalidate what they changed. The routes are
`async def`: they run on the event loop, and every call to PostgreSQL or Redis is awaited, so
that while one request waits for an answer the loop serves the others.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app import repository, service
from app.api.deps import CacheDep, SessionDep, SettingsDep
from app.schemas import ErrorResponse, Item, ItemCreate, ItemPatch, ItemQuery, ItemStats

router = APIRouter(prefix="/items", tags=["items"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "No such item"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"model": ErrorResponse, "description": "The name is taken"}
}


def cached_json(body: bytes, hit: bool, **headers: str) -> Response:
    return Response(
        content=body,
        media_type="application/json",
        headers={"X-Cache": "HIT" if hit else "MISS", **headers},
    )


@router.get("", response_model=list[Item])
async def list_items(
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    query: Annotated[ItemQuery, Query()],
) -> Response:
    """Return one page of the matching items; `X-Total-Count` holds how many match in all."""
    body, total, hit = await service.read_page(
        session=session, cache=cache, settings=settings, query=query
    )
    return cached_json(body, hit, **{"X-Total-Count": str(total)})


@router.post("", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def create_item(
    session: SessionDep, cache: CacheDep, data: ItemCreate, response: Response
) -> Item:
    """Create an item; `Location` points to it."""
    item = await repository.create_item(session=session, data=data)
    await service.after_write(cache=cache)
    response.headers["Location"] = f"/items/{item.id}"
    return item


@router.get("/stats", response_model=ItemStats)
async def item_stats(session: SessionDep, cache: CacheDep, settings: SettingsDep) -> Response:
    """Count the items and summarise their prices per category (cached; computed once)."""
    body, hit = await service.read_stats(session=session, cache=cache, settings=settings)
    return cached_json(body, hit)


@router.get("/{item_id}", response_model=Item, responses=NOT_FOUND)
async def get_item(
    session: SessionDep, cache: CacheDep, settings: SettingsDep, item_id: int
) -> Response:
    body, hit = await service.read_item(
        session=session, cache=cache, settings=settings, item_id=item_id
    )
    return cached_json(body, hit)


@router.put("/{item_id}", responses={**NOT_FOUND, **CONFLICT})
async def replace_item(
    session: SessionDep, cache: CacheDep, item_id: int, data: ItemCreate
) -> Item:
    """Replace the whole item: optional fields left out become null."""
    item = await repository.replace_item(session=session, item_id=item_id, data=data)
    await service.after_write(cache=cache, item_id=item_id)
    return item


@router.patch("/{item_id}", responses={**NOT_FOUND, **CONFLICT})
async def update_item(session: SessionDep, cache: CacheDep, item_id: int, data: ItemPatch) -> Item:
    """Change only the fields in the body."""
    item = await repository.update_item(session=session, item_id=item_id, data=data)
    await service.after_write(cache=cache, item_id=item_id)
    return item


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_item(session: SessionDep, cache: CacheDep, item_id: int) -> None:
    await repository.delete_item(session=session, item_id=item_id)
    await service.after_write(cache=cache, item_id=item_id)
