"""The prediction log: every prediction the predictor served, and its ground truth.

SQLite on the embedded path, PostgreSQL in the stack; both through SQLAlchemy
Core so the same code and the same tests cover both.  Feature values are kept
as one JSON document per prediction, so a user's own schema needs no migration.
"""

from __future__ import annotations

import enum
import io
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import orjson
import pandas as pd
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from core import migrations

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    # PostgreSQL keeps ids as its native uuid (16 bytes, compared as bytes): ~10% less
    # of its CPU per logged row than varchar(36), measured with COPY of 20k rows.
    Column("prediction_id", String(36).with_variant(postgresql.UUID(as_uuid=False),
                                                    "postgresql"), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("features", JSON, nullable=False),
    # A binary model's calibrated probability and 0/1 decision; a regression model's
    # predicted number in `value` (core.task decides which a model fills).
    Column("probability", Float, nullable=True),
    Column("decision", Integer, nullable=True),
    Column("value", Float, nullable=True),
    # The number's prediction interval, as answered (empty for a probability).
    Column("interval_low", Float, nullable=True),
    Column("interval_high", Float, nullable=True),
    # The real outcome: 0 or 1, or the number.
    Column("actual", Float, nullable=True),
    Column("feedback_at", DateTime(timezone=True), nullable=True),
    # Who sent the outcome (the API key's id; empty when the predictor asks no key) and
    # whether that key was trusted then: training, the gate and live quality use only
    # trusted labels.
    Column("feedback_by", String(64), nullable=True),
    Column("feedback_trusted", Boolean, nullable=True),
    # The exporter's window (one version's newest rows) reads this index backwards.
    Index("ix_predictions_model_version_created_at", "model_version", "created_at"),
)


@dataclass(frozen=True)
class PredictionRecord:
    prediction_id: str
    model_name: str
    model_version: str
    features: dict[str, Any]
    probability: float | None  # a binary model's (None for a number)
    decision: int | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    value: float | None = None  # a regression model's predicted number
    interval_low: float | None = None  # ... and the interval it was answered with
    interval_high: float | None = None


@dataclass(frozen=True)
class PredictionBatch(Sequence[PredictionRecord]):
    """One request's predictions, column by column.

    A 1,000-record batch request logs as one of these instead of 1,000
    PredictionRecord objects (~1.5 us each to build); it reads as a sequence of
    records wherever one is wanted (the spool, SQLite), and PostgreSQL's COPY
    formats it without building them.
    """

    model_name: str
    model_version: str
    created_at: datetime
    prediction_ids: list[str]
    features: list[dict[str, Any]]
    # The task's columns (core.task.Task.answers): probabilities and decisions of a binary
    # model, or the values of a regression model; None: the column stays empty.
    probabilities: list[float] | None = None
    decisions: list[int] | None = None
    values: list[float] | None = None
    interval_lows: list[float] | None = None
    interval_highs: list[float] | None = None

    def column(self, name: str) -> list[Any]:
        """A task's column (`probabilities`, `decisions`, `values`, `interval_lows`,
        `interval_highs`), or a None per row if not given."""
        given = getattr(self, name)
        return [None] * len(self.prediction_ids) if given is None else given

    def __len__(self) -> int:
        return len(self.prediction_ids)

    @overload
    def __getitem__(self, index: int) -> PredictionRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[PredictionRecord]: ...

    def __getitem__(self, index: int | slice) -> PredictionRecord | list[PredictionRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return PredictionRecord(
            self.prediction_ids[index], self.model_name, self.model_version,
            self.features[index], _item(self.probabilities, index),
            _item(self.decisions, index), self.created_at, _item(self.values, index),
            _item(self.interval_lows, index), _item(self.interval_highs, index))

    def __iter__(self) -> Iterator[PredictionRecord]:
        return (self[i] for i in range(len(self)))


def _item(column: list[Any] | None, index: int) -> Any:
    return None if column is None else column[index]


class FeedbackResult(enum.Enum):
    RECORDED = "recorded"
    UNCHANGED = "unchanged"      # the same outcome was already recorded
    CONFLICT = "conflict"        # a different outcome was already recorded
    UNKNOWN_ID = "unknown_id"
    OTHER_MODEL = "other_model"  # the prediction was made by another registered model


class PredictionStore:
    """Reads and writes the prediction log at a SQLAlchemy URL."""

    def __init__(self, url: str, *, engine: Engine | None = None):
        self.url = url
        self.engine = engine or _make_engine(url)
        self._at_head = False  # the tables were found at this code's revision

    def migrate(self) -> None:
        """Bring the tables to the newest schema by running the migrations
        (core/migrations): creates them in an empty database, upgrades (and first
        stamps) a table made by an earlier version.  Idempotent, and safe to run from
        several processes at once; at the newest schema already it costs one query.
        Only what sets a stack up calls this (core/migrations says where)."""
        migrations.upgrade(self.engine)
        self._at_head = True

    def require_tables(self) -> None:
        """Raise migrations.NotMigrated (saying to run the migrations) unless the tables
        are at this code's revision; checked once per store, then remembered."""
        if not self._at_head:
            migrations.require_head(self.engine)
            self._at_head = True

    def _readable(self) -> bool:
        """Readers: False for a database without our tables (nothing was logged there:
        an empty result), NotMigrated for tables of an older revision."""
        try:
            self.require_tables()
        except migrations.NotMigrated as exc:
            if exc.empty:
                return False
            raise
        return True

    def dispose(self) -> None:
        self.engine.dispose()

    def log(self, records: Sequence[PredictionRecord]) -> int:
        """Insert predictions in one transaction; returns how many were given.

        A prediction id already in the table is skipped, not written twice: a batch
        replayed after a lost acknowledgement (the insert committed, the answer did
        not arrive) must not duplicate rows.
        """
        return self.log_chunks([records])

    def log_chunks(self, chunks: Sequence[Sequence[PredictionRecord]]) -> int:
        """`log` for several requests' predictions (each a sequence, e.g. a
        PredictionBatch) in one transaction."""
        total = sum(len(chunk) for chunk in chunks)
        if not total:
            return 0
        if self.engine.dialect.name == "postgresql":
            self._copy_skipping_known_ids(_copy_text(chunks))
            return total
        rows = [
            {
                "prediction_id": r.prediction_id,
                "created_at": r.created_at,
                "model_name": r.model_name,
                "model_version": r.model_version,
                "features": r.features,
                "probability": _float_or_none(r.probability),
                "decision": None if r.decision is None else int(r.decision),
                "value": _float_or_none(r.value),
                "interval_low": _float_or_none(r.interval_low),
                "interval_high": _float_or_none(r.interval_high),
            }
            for chunk in chunks for r in chunk
        ]
        with self.engine.begin() as conn:
            # RETURNING is what makes SQLAlchemy send one multi-row INSERT per page of
            # rows ("insertmanyvalues"); without it ON CONFLICT falls back to one round
            # trip per row, ~20x slower under load.
            conn.execute(self._insert_skipping_known_ids(), rows).all()
        return len(rows)

    def _copy_skipping_known_ids(self, text: str) -> None:
        """PostgreSQL: COPY the rows straight into the table; if an id is already there
        (a batch replayed after a lost acknowledgement), that transaction rolls back
        and the rows go through a session-private staging table and INSERT ... ON
        CONFLICT DO NOTHING instead.

        Fresh ids are the rule, so the direct COPY is the path taken: it costs
        PostgreSQL about half the CPU of staging then inserting, and the writer thread
        (which shares its worker's CPU with the requests) ~2 us a row to format.
        """
        columns = ", ".join(_COPIED_COLUMNS)
        # psycopg2 reads the file `size` characters at a time, taking the GIL back for
        # each read; in a busy worker each take can wait a switch interval (5 ms) behind
        # the request threads, so 8 KB reads made a 2,000-row COPY take ~0.5 s. One read.
        size = len(text) + 1
        try:
            with self.engine.begin() as conn:
                with conn.connection.dbapi_connection.cursor() as cursor:
                    cursor.copy_expert(f"COPY {predictions.name} ({columns}) FROM STDIN",
                                       io.StringIO(text), size)
            return
        except Exception as exc:
            if getattr(exc, "pgcode", None) != _UNIQUE_VIOLATION:
                raise
        with self.engine.begin() as conn:
            with conn.connection.dbapi_connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING_TABLE} "
                    f"(LIKE {predictions.name}) ON COMMIT DELETE ROWS")
                cursor.copy_expert(f"COPY {_STAGING_TABLE} ({columns}) FROM STDIN",
                                   io.StringIO(text), size)
                cursor.execute(
                    f"INSERT INTO {predictions.name} ({columns}) "
                    f"SELECT {columns} FROM {_STAGING_TABLE} "
                    f"ON CONFLICT (prediction_id) DO NOTHING")

    def _insert_skipping_known_ids(self) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            raise ValueError(f"unsupported prediction store dialect {dialect!r}")
        return dialect_insert(predictions).on_conflict_do_nothing(
            index_elements=[predictions.c.prediction_id]).returning(predictions.c.prediction_id)

    def record_feedback(self, prediction_id: str, actual: float, *, sent_by: str = "",
                        trusted: bool = True, model_name: str | None = None
                        ) -> FeedbackResult:
        """Store the real outcome next to its prediction, with who sent it and whether that
        sender is trusted; repeating the same outcome is a no-op.  NotMigrated when the
        tables are not at this code's revision."""
        self.require_tables()
        with self.engine.begin() as conn:
            current = conn.execute(
                select(predictions.c.actual, predictions.c.model_name)
                .where(predictions.c.prediction_id == prediction_id)
            ).first()
            if current is None:
                return FeedbackResult.UNKNOWN_ID
            # `model_name`: the business whose outcome this is (a price is not a churn).
            if model_name is not None and current.model_name != model_name:
                return FeedbackResult.OTHER_MODEL
            if current.actual is not None:
                if current.actual == actual:
                    return FeedbackResult.UNCHANGED
                return FeedbackResult.CONFLICT
            conn.execute(
                update(predictions)
                .where(predictions.c.prediction_id == prediction_id)
                .values(actual=float(actual), feedback_at=datetime.now(UTC),
                        feedback_by=sent_by, feedback_trusted=trusted)
            )
        return FeedbackResult.RECORDED

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def count(self) -> int:
        if not self._readable():
            return 0
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())

    def ids(self) -> list[str]:
        if not self._readable():
            return []
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(select(predictions.c.prediction_id))]

    def recent(
        self,
        limit: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        model_version: str | None = None,
        model_name: str | None = None,
    ) -> pd.DataFrame:
        """The newest `limit` predictions (oldest first), one column per feature.

        Columns: the feature names, then prediction_id, created_at, model_version,
        probability, decision, value, actual (only outcomes from trusted senders: others
        read as missing), feedback_by.
        """
        query = select(predictions).order_by(predictions.c.created_at.desc()).limit(limit)
        if since is not None:
            query = query.where(predictions.c.created_at >= since)
        if until is not None:
            query = query.where(predictions.c.created_at < until)
        if model_version is not None:
            query = query.where(predictions.c.model_version == model_version)
        if model_name is not None:  # one registered model's rows (each restarts at v1)
            query = query.where(predictions.c.model_name == model_name)
        if not self._readable():
            return _rows_to_frame([])
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return _rows_to_frame(reversed(rows))


    def labelled(self, limit: int, *, model_name: str | None = None) -> pd.DataFrame:
        """The newest `limit` predictions whose real outcome has arrived from a trusted
        sender (oldest first): what training and the gate may learn from (`model_name`:
        only that registered model's)."""
        query = (select(predictions).where(predictions.c.actual.is_not(None))
                 .where(predictions.c.feedback_trusted.is_(True))
                 .order_by(predictions.c.created_at.desc()).limit(limit))
        if model_name is not None:
            query = query.where(predictions.c.model_name == model_name)
        if not self._readable():
            return _rows_to_frame([])
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return _rows_to_frame(reversed(rows))


def _rows_to_frame(rows: Iterable[Any]) -> pd.DataFrame:
    rows = list(rows)
    meta_columns = ["prediction_id", "created_at", "model_version", "probability", "decision",
                    "value", "interval_low", "interval_high", "actual", "feedback_by"]
    if not rows:
        return pd.DataFrame(columns=meta_columns)
    features = pd.DataFrame.from_records([row["features"] for row in rows])
    meta = pd.DataFrame.from_records([
        {**{c: row[c] for c in meta_columns},
         # An outcome from a sender not trusted (or from before senders were recorded) is
         # kept in the table but read as missing: nothing downstream learns from it.
         "actual": row["actual"] if row["feedback_trusted"] else None}
        for row in rows])
    return pd.concat([features, meta], axis=1)


_STAGING_TABLE = "incoming_predictions"
_COPIED_COLUMNS = ("prediction_id", "created_at", "model_name", "model_version", "features",
                   "probability", "decision", "value", "interval_low", "interval_high")
_UNIQUE_VIOLATION = "23505"


def _copy_text(chunks: Iterable[Sequence[PredictionRecord]]) -> str:
    """Rows in COPY's text format (tab-separated, backslash escapes), in _COPIED_COLUMNS order."""
    lines: list[str] = []
    add = lines.append
    for chunk in chunks:
        if isinstance(chunk, PredictionBatch):
            head = "\t".join((chunk.created_at.isoformat(), _copy_escape(chunk.model_name),
                              _copy_escape(chunk.model_version)))
            # A batch's ids are the predictor's own canonical UUIDs (hex and dashes): no
            # escape needed; records from elsewhere (spool, callers) get theirs below.
            for prediction_id, features, probability, decision, value, low, high in zip(
                    chunk.prediction_ids, chunk.features, chunk.column("probabilities"),
                    chunk.column("decisions"), chunk.column("values"),
                    chunk.column("interval_lows"), chunk.column("interval_highs"), strict=True):
                add(f"{prediction_id}\t{head}\t{_features_json(features)}\t"
                    f"{_copy_number(probability)}\t{_copy_integer(decision)}\t"
                    f"{_copy_number(value)}\t{_copy_number(low)}\t{_copy_number(high)}\n")
            continue
        for r in chunk:
            add(f"{_copy_escape(r.prediction_id)}\t{r.created_at.isoformat()}\t"
                f"{_copy_escape(r.model_name)}\t{_copy_escape(r.model_version)}\t"
                f"{_features_json(r.features)}\t{_copy_number(r.probability)}\t"
                f"{_copy_integer(r.decision)}\t{_copy_number(r.value)}\t"
                f"{_copy_number(r.interval_low)}\t{_copy_number(r.interval_high)}\n")
    return "".join(lines)


def _copy_number(value: float | None) -> str:
    return "\\N" if value is None else repr(float(value))


def _copy_integer(value: int | None) -> str:
    return "\\N" if value is None else str(int(value))


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _features_json(features: dict[str, Any]) -> str:
    """The features as JSON, escaped for COPY's text format."""
    try:
        text = orjson.dumps(features).decode()
    except TypeError:  # an integer beyond 64 bits (valid if in range): the stdlib writes it
        text = json.dumps(features, separators=(",", ":"))
    # JSON escapes every control character, so only its backslashes need COPY's escape.
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _switch_to_wal(cursor: Any, timeout: float = 30.0) -> None:
    """PRAGMA journal_mode=WAL, tried again while the file is locked.  Switching a new file
    takes its exclusive lock, and two connections switching at once deadlock: SQLite fails
    one of them at once ("database is locked") instead of calling the busy handler.
    Measured: 6 threads opening a new file together, 65 of 300 rounds failed; 0 with this."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # Several gunicorn workers write to one file: WAL lets readers go on during a
        # write, and the busy timeout makes a writer wait for the lock instead of failing.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # A store that does not answer must fail fast: the caller spools and goes on.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"connect_timeout": 5})
