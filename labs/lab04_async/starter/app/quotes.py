"""Quotes: one item combined with the answers of two pricing-service calls made at once."""

from app.pricing import PricingClient
from app.schemas import Item, Quote


async def quote_item(*, item: Item, pricing: PricingClient) -> Quote:
    """Ask for price and stock at once; PricingUnavailableError if either call fails."""
    # TODO(lab 4): call `pricing.price(item.id, item.price)` and `pricing.stock(item.id)`
    # concurrently (asyncio.gather), then build the Quote: the item, the price and discount
    # from the first answer, `available` from the second.
    raise NotImplementedError("TODO(lab 4): the quote (two pricing calls at once)")
