"""Orders: a row in PostgreSQL and an `order.created` event in RabbitMQ, both or neither.

The decision (the handout explains it): **no order without a confirmed event**. The order is
inserted in an open transaction, the event is published and confirmed by the broker, and only
then is the transaction committed. If the broker is down or refuses the event, the transaction
rolls back and the client gets a 503: there is no order, and retrying is safe.

    INSERT order (not committed) -> publish, wait for the confirm -> COMMIT -> 201
                                    \\-> no confirm: ROLLBACK -> 503, no order

What remains: the confirm arrived but the COMMIT failed (the database died in that
millisecond, the process was killed). Then an event describes an order that does not exist.
The other order (commit first, then publish) has the opposite hole: a committed order whose
event is lost. Closing both needs an outbox table (see the handout's stretch goals).
"""

import datetime as dt

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.broker import Event, Publisher
from app.errors import NotFoundError, UnknownItemError
from app.models import ItemRow, OrderRow
from app.schemas import Order, OrderCreate

ORDER_CREATED = "order.created"


def order_created_event(order: Order) -> Event:
    """The event for a new order; its message id is derived from the order, so a repeated
    publish of the same order carries the same id and the consumer can drop the copy."""
    return Event(
        routing_key=ORDER_CREATED,
        message_id=f"{ORDER_CREATED}:{order.id}",
        type=ORDER_CREATED,
        body=order.model_dump_json().encode(),
    )


def _order(row: OrderRow) -> Order:
    return Order(
        id=row.id,
        item_id=row.item_id,
        item_name=row.item_name,
        unit_price=row.unit_price,
        quantity=row.quantity,
        total=round(row.unit_price * row.quantity, 2),
        remind_in_seconds=row.remind_in_seconds,
        created_at=row.created_at.astimezone(dt.UTC),
    )


async def create_order(*, session: AsyncSession, publisher: Publisher, data: OrderCreate) -> Order:
    """Insert the order, publish `order.created`, commit once the broker confirmed it.

    UnknownItemError (422) for an item that does not exist; BrokerUnavailableError (503) when
    the event is not confirmed, and then nothing is committed.
    """
    item = await session.get(ItemRow, data.item_id)
    if item is None:
        raise UnknownItemError(data.item_id)
    row = await session.scalar(
        insert(OrderRow)
        .values(
            item_id=item.id,
            item_name=item.name,
            unit_price=item.price,
            quantity=data.quantity,
            remind_in_seconds=data.remind_in_seconds,
        )
        .returning(OrderRow)
    )
    assert row is not None
    order = _order(row)
    # Raises BrokerUnavailableError without a confirm: the session then closes without a
    # commit and PostgreSQL rolls the INSERT back.
    await publisher.publish(order_created_event(order))
    await session.commit()
    return order


async def get_order(*, session: AsyncSession, order_id: int) -> Order:
    row = await session.scalar(select(OrderRow).where(OrderRow.id == order_id))
    if row is None:
        raise NotFoundError(f"Order {order_id} not found")
    return _order(row)
