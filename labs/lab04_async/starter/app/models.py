"""The tables, as SQLAlchemy 2.0 typed ORM classes (the API's models live in schemas.py).

The naming convention gives every constraint and index a predictable name
(`pk_items`, `uq_items_name`, `ix_items_category_price`), so that migrations can find them
again to drop or change them, on every database the same way.
"""

from sqlalchemy import CheckConstraint, Identity, Index, MetaData, Numeric, String
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
