"""Who sent each outcome and whether that sender was trusted then (51dddc1): training,
the gate and live quality learn only from trusted labels.

Outcomes already in the table keep NULL in both: sender unknown, so not trusted.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("feedback_by", sa.String(64), nullable=True))
    op.add_column("predictions", sa.Column("feedback_trusted", sa.Boolean(), nullable=True))


def downgrade() -> None:
    # Batch: SQLite drops columns by copying the table (PostgreSQL just drops them).
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("feedback_trusted")
        batch.drop_column("feedback_by")
