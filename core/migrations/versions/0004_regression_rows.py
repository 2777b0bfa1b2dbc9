"""Rows of a regression model beside a binary one's (issue 25): `value` holds the predicted
number, `probability` and `decision` (a binary model's) may be empty, and `actual` holds a
number -- a price, a duration -- instead of only 0 or 1.

Binary rows keep their probability and decision; their outcomes, 0 and 1, read back as
0.0 and 1.0 (equal to the integers, so feedback already recorded stays "unchanged" when
sent again).  PostgreSQL rewrites the table for the type change of `actual` (one pass);
SQLite copies the table (batch mode), as it does for every column change.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The new column on its own: SQLite adds it in place, and Alembic's batch mode, given
    # an added column beside altered ones, fails to order the copy ("Circular dependency").
    op.add_column("predictions", sa.Column("value", sa.Float(), nullable=True))
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("probability", existing_type=sa.Float(), nullable=True)
        batch.alter_column("decision", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("actual", existing_type=sa.Integer(), type_=sa.Float(),
                           existing_nullable=True,
                           postgresql_using="actual::double precision")


def downgrade() -> None:
    # Only possible while the table holds no regression rows (their NULL probability
    # would break the NOT NULL): the downgrade fails, and rolls back, otherwise.
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("actual", existing_type=sa.Float(), type_=sa.Integer(),
                           existing_nullable=True, postgresql_using="actual::integer")
        batch.alter_column("decision", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("probability", existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("value")
