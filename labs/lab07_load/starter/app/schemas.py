"""Request and response models: the contract of the API, validated by pydantic.

`strict=True` refuses silent conversions ("12" is not a price, 1 is not a name) and
`extra="forbid"` refuses fields the API does not know, so a client's typo becomes a 422
instead of being ignored.
"""

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# The price column is NUMERIC(10, 2): reject what it cannot hold with a 422, not a 500.
MAX_PRICE = 1_000_000

Name = Annotated[str, Field(min_length=1, max_length=100, examples=["Coffee mug"])]
Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, examples=[9.5])]
Description = Annotated[str, Field(max_length=1000, examples=["Ceramic, 350 ml"])]
Category = Annotated[str, Field(min_length=1, max_length=50, examples=["kitchen"])]


class ItemCreate(BaseModel):
    """Body of POST /items and PUT /items/{id} (a PUT replaces every field)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Name
    price: Price
    description: Description | None = None
    category: Category | None = None


class ItemPatch(BaseModel):
    """Body of PATCH /items/{id}: only the fields that are sent change."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Name | None = None
    price: Price | None = None
    description: Description | None = None
    category: Category | None = None

    @field_validator("name", "price", mode="before")
    @classmethod
    def _required_fields_are_not_null(cls, value: Any) -> Any:
        # An item always has a name and a price: PATCH may change them, never erase them.
        if value is None:
            raise ValueError("may be changed but not set to null")
        return value


class Item(BaseModel):
    """An item as the API returns it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: int
    name: Name
    price: Price
    description: Description | None = None
    category: Category | None = None


class PageParams(BaseModel):
    """Query parameters of GET /items (query strings are text, so this model is not strict)."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0)


# The only orders a client may ask for; a leading "-" means descending. A whitelist, because a
# sort field taken from the query string and pasted into SQL would be an injection hole.
SortField = Literal["id", "-id", "name", "-name", "price", "-price"]


class ItemQuery(PageParams):
    """Query parameters of GET /items: a page, filters and the order."""

    name_contains: str | None = Field(default=None, min_length=1, max_length=100)
    category: Category | None = None
    min_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    sort: SortField = "id"

    @model_validator(mode="after")
    def _price_range_is_not_empty(self) -> Self:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price must not be greater than max_price")
        return self


class CategoryStats(BaseModel):
    """Prices of one category (`category` null: the items without one)."""

    category: str | None
    count: int
    min_price: float
    max_price: float
    avg_price: float
    p50_price: float
    p90_price: float
    p99_price: float


class ItemStats(BaseModel):
    """GET /items/stats: all items, and their prices per category."""

    total: int
    categories: list[CategoryStats]
    computed_at: dt.datetime = Field(description="when the numbers were computed (UTC)")


class Quote(BaseModel):
    """GET /items/{id}/quote: the item with today's price and stock from the pricing service."""

    item: Item
    price: float = Field(description="the price after the discount, from the pricing service")
    discount: float = Field(description="the discount the pricing service applied (0.1 = 10 %)")
    available: int = Field(description="pieces in stock, from the pricing service")


MAX_QUANTITY = 1000
MAX_REMINDER_SECONDS = 86_400


class OrderCreate(BaseModel):
    """Body of POST /orders."""

    model_config = ConfigDict(strict=True, extra="forbid")

    item_id: int = Field(ge=1, examples=[1])
    quantity: int = Field(ge=1, le=MAX_QUANTITY, examples=[2])
    remind_in_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REMINDER_SECONDS,
        description="send a reminder about the order this many seconds after it is created",
    )


class Order(BaseModel):
    """An order as the API returns it (and as the order.created event carries it)."""

    id: int
    item_id: int
    item_name: str
    unit_price: float
    quantity: int
    total: float
    remind_in_seconds: int | None
    created_at: dt.datetime


class Health(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    """Every error the API returns: `detail` is a message, or a list of validation errors."""

    detail: str | list[dict[str, Any]]
