"""POST /orders and GET /orders/{order_id}: an order answers 201 only once its event is safe."""

from typing import Any

from fastapi import APIRouter, Response, status

from app import orders
from app.api.deps import PublisherDep, SessionDep
from app.schemas import ErrorResponse, Order, OrderCreate

router = APIRouter(prefix="/orders", tags=["orders"])

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": ErrorResponse,
        "description": "The broker did not confirm the order's event: no order was created",
    }
}
UNKNOWN_ITEM: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "Invalid body, or no item with this item_id",
    }
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorResponse, "description": "No such order"}
}


@router.post("", status_code=status.HTTP_201_CREATED, responses={**UNKNOWN_ITEM, **UNAVAILABLE})
async def create_order(
    session: SessionDep, publisher: PublisherDep, data: OrderCreate, response: Response
) -> Order:
    """Create an order and publish `order.created`; 201 only after the broker confirmed it."""
    order = await orders.create_order(session=session, publisher=publisher, data=data)
    response.headers["Location"] = f"/orders/{order.id}"
    return order


@router.get("/{order_id}", responses=NOT_FOUND)
async def get_order(session: SessionDep, order_id: int) -> Order:
    return await orders.get_order(session=session, order_id=order_id)
