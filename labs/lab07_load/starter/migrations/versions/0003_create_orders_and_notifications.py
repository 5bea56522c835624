"""Create the orders table (the shop API's) and the notifications table (the notifications
service's).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("item_name", sa.String(length=100), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("remind_in_seconds", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_orders_quantity_positive")),
        sa.CheckConstraint(
            "remind_in_seconds > 0", name=op.f("ck_orders_remind_in_seconds_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    # One service, one table: in production the notifications service would have a database
    # of its own; here both share the lab's database, and each writes only its own table.
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        # The consumer's idempotency key: a redelivered message cannot add a second row.
        sa.UniqueConstraint("message_id", name=op.f("uq_notifications_message_id")),
    )
    op.create_index(op.f("ix_notifications_order_id"), "notifications", ["order_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_notifications_order_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("orders")
