"""Index items by (category, price) for the list's filter query.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On a big production table add `postgresql_concurrently=True` (outside a transaction),
    # so that writes are not blocked while the index is built.
    op.create_index(op.f("ix_items_category_price"), "items", ["category", "price"])


def downgrade() -> None:
    op.drop_index(op.f("ix_items_category_price"), table_name="items")
