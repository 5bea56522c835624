"""The messages the notifications service reads, and the ones it sends to itself.

Its own copy of the contract: the shop API and this service share no code, only the JSON.
Unknown fields are ignored, so the shop may add fields without breaking this service.
"""

import datetime as dt

from pydantic import BaseModel, ConfigDict, ValidationError

from notifications.topology import ORDER_CREATED, ORDER_REMINDER

__all__ = ["InvalidMessage", "OrderCreated", "Reminder", "parse"]


class InvalidMessage(ValueError):
    """A message this service cannot read: retrying will not change it."""


class OrderCreated(BaseModel):
    """`order.created`: the order as the shop API answered it."""

    model_config = ConfigDict(extra="ignore")

    id: int
    item_id: int
    item_name: str
    quantity: int
    total: float
    remind_in_seconds: int | None = None
    created_at: dt.datetime

    def remind_at(self) -> dt.datetime | None:
        if self.remind_in_seconds is None:
            return None
        return self.created_at + dt.timedelta(seconds=self.remind_in_seconds)


class Reminder(BaseModel):
    """`order.reminder`: sent by this service to itself through the delay queue."""

    model_config = ConfigDict(extra="ignore")

    order_id: int
    item_name: str
    remind_at: dt.datetime


def parse(message_type: str | None, body: bytes) -> OrderCreated | Reminder:
    """Return the message as a model; InvalidMessage if it is not one we know."""
    model: type[OrderCreated] | type[Reminder]
    if message_type == ORDER_CREATED:
        model = OrderCreated
    elif message_type == ORDER_REMINDER:
        model = Reminder
    else:
        raise InvalidMessage(f"unknown message type {message_type!r}")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidMessage(f"{message_type}: {where}: {first['msg']}") from None
