"""The tables, as SQLAlchemy 2.0 typed ORM classes (the API's models live in schemas.py).

TODO(lab 2):
- give the MetaData a naming convention, so constraints get predictable names
  (`pk_items`, `uq_items_name`, `ck_items_price_non_negative`, `ix_items_category_price`);
- complete ItemRow: price (exact, with cents), description and category (nullable), a unique
  name, and a check constraint that keeps the price >= 0. Then write the same into the first
  migration (migrations/versions/0001_create_items.py).
"""

from sqlalchemy import Identity, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # TODO(lab 2): MetaData(naming_convention={"pk": "pk_%(table_name)s", ...})
    metadata = MetaData()


class ItemRow(Base):
    """One item."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # TODO(lab 2): price, description, category; `Mapped[str | None]` makes a nullable column.
