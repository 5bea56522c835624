"""The tables, as SQLAlchemy 2.0 typed ORM classes (the API's models live in schemas.py).

The naming convention gives every constraint and index a predictable name
(`pk_items`, `uq_items_name`, `ix_items_category_price`), so that migrations can find them
again to drop or change them, on every database the same way.
"""

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Numeric(10, 2) holds up to 99,999,999.99; schemas.MAX_PRICE keeps requests well below that.
PRICE_TYPE = Numeric(10, 2, asdecimal=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ItemRow(Base):
    """One item. Prices are exact decimals with cents in the database, floats in the API."""

    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        # The lab's filter query: `WHERE category = ? AND price BETWEEN ? AND ? ORDER BY price`.
        # Equality column first, range column second: one index range scan answers it in order.
        Index("ix_items_category_price", "category", "price"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    price: Mapped[float] = mapped_column(PRICE_TYPE)
    description: Mapped[str | None] = mapped_column(String(1000))
    category: Mapped[str | None] = mapped_column(String(50))


class OrderRow(Base):
    """One order. It copies the item's name and price: a later change of the item (or its
    deletion) does not change what was ordered, so there is no foreign key to items."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("remind_in_seconds > 0", name="remind_in_seconds_positive"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    item_id: Mapped[int] = mapped_column(Integer)
    item_name: Mapped[str] = mapped_column(String(100))
    unit_price: Mapped[float] = mapped_column(PRICE_TYPE)
    quantity: Mapped[int] = mapped_column(Integer)
    remind_in_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class NotificationRow(Base):
    """What the notifications service wrote for one message. `message_id` is unique: a
    message delivered twice cannot leave two rows (the consumer's idempotency key).
    The notifications service owns this table; the shop API never writes to it."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    order_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    text: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
