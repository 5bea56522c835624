"""GET /items/{item_id}/quote: our item, combined with two answers of the pricing service.

TODO(lab 4): write the route here, an `async def quote_item(...) -> Quote`:
- read the item as GET /items/{id} does (`service.read_item`, through the cache; an unknown
  id raises ItemNotFoundError, a 404) and parse it: `Item.model_validate_json(body)`;
- give the database connection back before waiting on the network: `await session.close()`
  (held across the pricing calls, the pool would cap how many quotes run at once);
- return `await quotes.quote_item(item=item, pricing=pricing)`, with `pricing: PricingDep`;
- document both errors in the decorator: `responses={**NOT_FOUND, **UNAVAILABLE}`.
"""

from typing import Any

from fastapi import APIRouter, status

from app.schemas import ErrorResponse

router = APIRouter(prefix="/items", tags=["items"])

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorResponse,
        "description": "The pricing service gave no answer (after every retry)",
    }
}
