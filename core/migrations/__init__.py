"""The prediction log's schema under Alembic: revisions in versions/, run from code.

No alembic.ini: `config()` points Alembic at this folder and hands env.py the
connection to use.  `upgrade()` runs where a stack is set up, and nowhere else: the
stack's `setup` step (compose, Swarm; the Kubernetes migrate job), the start of `make
serve` and of `make demo`, and `python -m core.migrations upgrade` by hand.  Everything
else -- the predictor, the exporter, the flows -- only checks (`require_head`): on tables
older than this code the readers stop with a message that says to run them, and the
predictor keeps answering, spools its rows and says the same on /health.

Before these migrations the table was made by `metadata.create_all` (and, from
51dddc1 on, the two feedback columns were added by ALTER TABLE to tables of any
earlier shape), so a database can hold a `predictions` table and no version table.
Such a table is recognised by its shape and stamped with the revision it matches
before upgrading; a shape no released version made is refused, not guessed at.

Adding a revision: copy the newest file in versions/, give it the next number as
`revision` and the previous one as `down_revision`, and extend tests/test_migrations.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import String, Uuid

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent
# Not Alembic's default `alembic_version`: MLflow and Prefect keep theirs under that
# name, and a store URL pointed at a database one of them uses must not read their
# revision as ours.
VERSION_TABLE = "onebox_alembic_version"
# pg_advisory_lock key (any bigint; advisory locks are per database): "onebox" in ASCII.
LOCK_KEY = 0x6F6E65626F78

# Alembic's `context` and `op` are module globals: two threads of one process running
# commands at once step on each other's, whatever the database's locks say.
_IN_PROCESS = threading.Lock()

TABLE = "predictions"
_BASE_COLUMNS = frozenset({"prediction_id", "created_at", "model_name", "model_version",
                           "features", "probability", "decision", "actual", "feedback_at"})
_FEEDBACK_COLUMNS = frozenset({"feedback_by", "feedback_trusted"})
_OLD_INDEX = "ix_predictions_model_version"
_NEW_INDEX = "ix_predictions_model_version_created_at"


class UnknownSchemaError(RuntimeError):
    """The database holds a `predictions` table no released version of onebox made."""


class NotMigrated(RuntimeError):
    """The prediction log's tables are not at this code's revision: the migrations have
    not run there.  `empty`: the database has no tables of ours at all (nothing was ever
    logged there), as opposed to tables of an older revision."""

    def __init__(self, message: str, *, empty: bool):
        super().__init__(message)
        self.empty = empty


HOW_TO_MIGRATE = ("run the migrations: `python -m core.migrations upgrade` (the stack's "
                  "`setup` step runs them on every `make up`; `make serve` and `make demo` "
                  "at their start)")


def config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for this folder, running on `connection` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head() -> str:
    head = ScriptDirectory.from_config(config()).get_current_head()
    assert head is not None
    return head


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(config()).walk_revisions())


def current(connection: Connection) -> str | None:
    """The revision the database is stamped with (None: no version table, or empty)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def require_head(engine: Engine) -> None:
    """Raise NotMigrated, saying what to run, unless the tables are at this code's head
    (or at a revision a newer onebox made: left to it, as `upgrade` leaves it).  One look
    at the version table; it changes nothing."""
    with engine.connect() as conn:
        stamped = current(conn)
        if stamped == head() or (stamped is not None and stamped not in known_revisions()):
            return
        empty = stamped is None and not inspect(conn).has_table(TABLE)
    shown = engine.url.render_as_string(hide_password=True)
    if empty:
        raise NotMigrated(f"the prediction log at {shown} has no tables yet; "
                          f"{HOW_TO_MIGRATE}", empty=True)
    raise NotMigrated(f"the prediction log at {shown} is at revision "
                      f"{stamped or 'none (a table from before migrations)'} and this "
                      f"version of onebox reads and writes revision {head()}; "
                      f"{HOW_TO_MIGRATE}", empty=False)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the prediction log's tables to `revision` (idempotent, safe to run from
    several processes, and threads, at once).

    A database already at head costs one look at the version table; otherwise the
    check and the upgrade run under a lock (PostgreSQL: an advisory lock; SQLite: the
    write lock), in one transaction where the database allows DDL in one.  A database
    a newer onebox migrated (a revision this code does not know, e.g. after an image
    rollback) is left as it is, with a warning: refusing to start would help no one.
    """
    target = head() if revision == "head" else revision
    with engine.connect() as conn:
        stamped = current(conn)
        if stamped == target:
            return
        if stamped is not None and stamped not in known_revisions():
            log.warning("prediction log: the database is at revision %s, which this "
                        "version does not know (its newest is %s); leaving it as it is",
                        stamped, head())
            return
        conn.rollback()
        with _IN_PROCESS, _exclusive(conn):
            stamped = current(conn)
            if stamped == target:
                return  # another process got there first
            cfg = config(conn)
            if stamped is None and inspect(conn).has_table(TABLE):
                _adopt(conn, cfg)
            log.info("prediction log: upgrading from %s to %s", current(conn) or "an empty "
                     "database", target)
            command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the prediction log's tables back to `revision` ("base": drop them)."""
    with engine.connect() as conn, _IN_PROCESS, _exclusive(conn):
        command.downgrade(config(conn), revision)


def legacy_shape(connection: Connection) -> tuple[str, bool]:
    """For a `predictions` table made by `create_all` (no version table): the revision
    its id column and indexes match ("0001" or "0002"), and whether it has the feedback
    provenance columns of 0003.  Raises UnknownSchemaError for any other shape."""
    inspector = inspect(connection)
    columns = {c["name"]: c for c in inspector.get_columns(TABLE)}
    indexes = {i["name"] for i in inspector.get_indexes(TABLE)}
    missing = _BASE_COLUMNS - columns.keys()
    if missing:
        raise UnknownSchemaError(f"{TABLE} lacks the columns {sorted(missing)}")
    feedback = _FEEDBACK_COLUMNS & columns.keys()
    if feedback and feedback != _FEEDBACK_COLUMNS:
        raise UnknownSchemaError(f"{TABLE} has {sorted(feedback)} but not "
                                 f"{sorted(_FEEDBACK_COLUMNS - feedback)}")
    id_type = columns["prediction_id"]["type"]
    if connection.dialect.name == "postgresql":
        uuid_id = isinstance(id_type, Uuid)
        if not uuid_id and not isinstance(id_type, String):
            raise UnknownSchemaError(f"{TABLE}.prediction_id is {id_type}")
    else:  # SQLite kept ids as varchar(36) throughout: only the indexes tell
        uuid_id = _NEW_INDEX in indexes
    if _OLD_INDEX in indexes and _NEW_INDEX not in indexes and not uuid_id:
        return "0001", bool(feedback)
    if _NEW_INDEX in indexes and _OLD_INDEX not in indexes and uuid_id:
        return "0002", bool(feedback)
    raise UnknownSchemaError(
        f"{TABLE} has prediction_id {id_type} and the indexes {sorted(indexes)}: "
        f"neither {_OLD_INDEX} with a varchar id (0001) nor {_NEW_INDEX} "
        f"with a uuid id (0002)")


def _adopt(conn: Connection, cfg: Config) -> None:
    """Stamp a table made by create_all with the revision its shape matches."""
    revision, feedback = legacy_shape(conn)
    log.info("prediction log: a table from before migrations, shaped as revision %s%s",
             revision, " with the feedback columns" if feedback else "")
    command.stamp(cfg, revision)
    if feedback:
        # The feedback columns came by ALTER TABLE, whatever the rest of the table was:
        # bring the rest to 0002, then the table is 0003 as it stands.
        command.upgrade(cfg, "0002")
        command.stamp(cfg, "0003")


@contextmanager
def _exclusive(conn: Connection) -> Iterator[None]:
    """One transaction on `conn` that no other process's migrations run beside."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # Session-level, so it spans the transaction; released below, or with the
        # connection should that fail.
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        conn.commit()
        try:
            with conn.begin():
                yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                conn.commit()
            except Exception:
                conn.invalidate()  # closes the session, and the lock with it
                raise
    elif dialect == "sqlite":
        # pysqlite begins transactions on its own, lazily (as DEFERRED) and not before
        # DDL: take it out of that and begin one that holds the write lock from the start.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        before = dbapi.isolation_level  # type: ignore[attr-defined]
        dbapi.isolation_level = None  # type: ignore[attr-defined]
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield
        finally:
            dbapi.isolation_level = before  # type: ignore[attr-defined]
    else:
        with conn.begin():
            yield
