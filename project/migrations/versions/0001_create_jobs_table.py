"""create the imgproc_jobs table

Revision ID: imgproc_0001
Revises:
Create Date: 2026-11-23 05:02:36.953347
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "imgproc_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "imgproc_jobs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_key", sa.String(length=64), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("input_format", sa.String(length=8), nullable=False),
        sa.Column("input_bytes", sa.Integer(), nullable=False),
        sa.Column("output_sha256", sa.String(length=64), nullable=True),
        sa.Column("output_format", sa.String(length=8), nullable=True),
        sa.Column("output_width", sa.Integer(), nullable=True),
        sa.Column("output_height", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "enqueued_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "operation IN ('crop', 'grayscale', 'resize')",
            name=op.f("ck_imgproc_jobs_operation_known"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'done', 'failed')",
            name=op.f("ck_imgproc_jobs_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imgproc_jobs")),
    )
    op.create_index(
        "ix_imgproc_jobs_unfinished",
        "imgproc_jobs",
        ["status", "enqueued_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'processing')"),
    )
    op.create_index(
        "uq_imgproc_jobs_request_key_live",
        "imgproc_jobs",
        ["request_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'failed'"),
    )


def downgrade() -> None:

    op.drop_index(
        "uq_imgproc_jobs_request_key_live",
        table_name="imgproc_jobs",
        postgresql_where=sa.text("status <> 'failed'"),
    )
    op.drop_index(
        "ix_imgproc_jobs_unfinished",
        table_name="imgproc_jobs",
        postgresql_where=sa.text("status IN ('queued', 'processing')"),
    )
    op.drop_table("imgproc_jobs")
