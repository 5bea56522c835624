"""Request and response models: the contract of the API, validated by pydantic.

TODO(lab 1): add the rules of the contract (see the handout, task 4):
- name: a string of 1..100 characters; price: a number >= 0;
- description (optional string) and category (optional string, 1..50 characters);
- no silent conversions ("12" is not a price): `model_config = ConfigDict(strict=True, ...)`;
- unknown fields are an error: `extra="forbid"`;
- PATCH may leave any field out, but name and price may not be set to null.
"""

from typing import Any

from pydantic import BaseModel

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class ItemCreate(BaseModel):
    """Body of POST /items and PUT /items/{id} (a PUT replaces every field)."""

    name: str
    price: float
    description: str | None = None
    category: str | None = None


class ItemPatch(BaseModel):
    """Body of PATCH /items/{id}: only the fields that are sent change."""

    name: str | None = None
    price: float | None = None
    description: str | None = None
    category: str | None = None


class Item(BaseModel):
    """An item as the API returns it."""

    id: int
    name: str
    price: float
    description: str | None = None
    category: str | None = None


# TODO(lab 1): a model `PageParams` for the query of GET /items: limit (1..MAX_PAGE_SIZE,
# default DEFAULT_PAGE_SIZE) and offset (>= 0, default 0). See "Query parameter models" in the
# FastAPI docs, or declare `limit` and `offset` with `Query(...)` in the route instead.


class Health(BaseModel):
    status: str = "ok"


class ErrorResponse(BaseModel):
    """Every error the API returns: `detail` is a message, or a list of validation errors."""

    detail: str | list[dict[str, Any]]
