"""count a job's transient retries and when its streak of transient errors began

Revision ID: imgproc_0002
Revises: imgproc_0001
Create Date: 2026-11-30 11:10:00

Transient errors (the database restarting, a full disk) are retried against a time budget,
separately from the attempts that stop a job which keeps killing its worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "imgproc_0002"
down_revision: str | None = "imgproc_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "imgproc_jobs",
        sa.Column("transient_retries", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "imgproc_jobs", sa.Column("retrying_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("imgproc_jobs", "retrying_since")
    op.drop_column("imgproc_jobs", "transient_retries")
