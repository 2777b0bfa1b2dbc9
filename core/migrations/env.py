"""Alembic's environment for the prediction log: online only, on the connection that
core.migrations.config() hands over (no alembic.ini, no URL of its own)."""

from __future__ import annotations

from alembic import context

from core.migrations import VERSION_TABLE
from core.store import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run these migrations through core.migrations (python -m core.migrations)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    compare_type=True,
    # SQLite alters most things by copying the table: batch mode does that.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
