"""A regression row's prediction interval beside its number (issue 26): `interval_low`
and `interval_high`, empty for a binary row and for rows logged before intervals.  Added
in place (nullable columns: no table rewrite on PostgreSQL, none on SQLite).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("interval_low", sa.Float(), nullable=True))
    op.add_column("predictions", sa.Column("interval_high", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("interval_high")
        batch.drop_column("interval_low")
