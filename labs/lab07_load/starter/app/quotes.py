"""Quotes: one item combined with the answers of two pricing-service calls made at once."""

import asyncio

from app.pricing import PricingClient
from app.schemas import Item, Quote


async def quote_item(*, item: Item, pricing: PricingClient) -> Quote:
    """Ask for price and stock at once; PricingUnavailableError if either call fails."""
    # gather runs both calls at once: the quote takes as long as the slower call, not the sum.
    price, stock = await asyncio.gather(
        pricing.price(item.id, item.price),
        pricing.stock(item.id),
    )
    return Quote(item=item, price=price.price, discount=price.discount, available=stock.available)
