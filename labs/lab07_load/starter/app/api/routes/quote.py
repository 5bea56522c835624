"""GET /items/{item_id}/quote: our item, combined with two answers of the pricing service."""

from typing import Any

from fastapi import APIRouter, status

from app import quotes, service
from app.api.deps import CacheDep, PricingDep, SessionDep, SettingsDep
from app.api.routes.items import NOT_FOUND
from app.schemas import ErrorResponse, Item, Quote

router = APIRouter(prefix="/items", tags=["items"])

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorResponse,
        "description": "The pricing service gave no answer (after every retry)",
    }
}


@router.get("/{item_id}/quote", responses={**NOT_FOUND, **UNAVAILABLE})
async def quote_item(
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    pricing: PricingDep,
    item_id: int,
) -> Quote:
    """Return the item with its current price and stock; 503 when pricing cannot answer."""
    body, _ = await service.read_item(
        session=session, cache=cache, settings=settings, item_id=item_id
    )
    # Give the database connection back before waiting on the network: held across the
    # pricing calls, the pool (not the event loop) would cap how many quotes run at once.
    await session.close()
    item = Item.model_validate_json(body)
    return await quotes.quote_item(item=item, pricing=pricing)
