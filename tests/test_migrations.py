"""The prediction log's migrations (core/migrations), on SQLite and a real PostgreSQL.

The released schemas are written out here as create_all made them (from git history,
not from the migrations), so each test starts from what a real deployment holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
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
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from core import migrations
from core.migrations.__main__ import main as migrations_cli
from core.store import FeedbackResult, PredictionRecord, PredictionStore, metadata, predictions
from tests.factories import valid_record

OLD_INDEX = "ix_predictions_model_version"
NEW_INDEX = "ix_predictions_model_version_created_at"


def released_table(shape: str) -> Table:
    """The `predictions` table as create_all made it: "0001" before 1d4cdf0, "0002"
    from 1d4cdf0 (uuid ids on PostgreSQL, composite index), "0003" from 51dddc1."""
    uuid_ids = shape != "0001"
    id_type = (String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
               if uuid_ids else String(36))
    columns: list[Any] = [
        Column("prediction_id", id_type, primary_key=True),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
        Column("model_name", String(200), nullable=False),
        Column("model_version", String(50), nullable=False, index=not uuid_ids),
        Column("features", JSON, nullable=False),
        Column("probability", Float, nullable=False),
        Column("decision", Integer, nullable=False),
        Column("actual", Integer, nullable=True),
        Column("feedback_at", DateTime(timezone=True), nullable=True),
    ]
    if shape == "0003":
        columns += [Column("feedback_by", String(64), nullable=True),
                    Column("feedback_trusted", Boolean, nullable=True)]
    if uuid_ids:
        columns.append(Index(NEW_INDEX, "model_version", "created_at"))
    return Table("predictions", MetaData(), *columns)


def add_feedback_columns_as_51dddc1_did(engine: Engine) -> None:
    """51dddc1's create_schema added the new columns by ALTER TABLE to a table of any
    shape (create_all left an existing table as it was)."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE predictions ADD COLUMN feedback_by VARCHAR(64)"))
        conn.execute(text("ALTER TABLE predictions ADD COLUMN feedback_trusted BOOLEAN"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionStore]:
    """A store on an empty database (nothing created yet)."""
    yield from _store(request, tmp_path)


@pytest.fixture
def pg_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionStore]:
    request.applymarker(pytest.mark.postgres)
    yield from _store(request, tmp_path, "postgres")


def _store(request: pytest.FixtureRequest, tmp_path: Path,
           kind: str | None = None) -> Iterator[PredictionStore]:
    kind = kind or request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'predictions.db'}"
    else:
        url = request.getfixturevalue("postgres_url").replace(
            "postgresql://", "postgresql+psycopg2://")
    store = PredictionStore(url)
    yield store
    store.dispose()


def old_rows(n: int = 6) -> list[dict[str, Any]]:
    """Rows as the released predictor wrote them: varchar uuids, every other one with
    its outcome."""
    start = datetime(2025, 6, 1, tzinfo=UTC)
    return [
        {"prediction_id": str(uuid.uuid4()), "created_at": start + timedelta(minutes=i),
         "model_name": "churn-classifier", "model_version": str(1 + i % 2),
         "features": valid_record(customer_age=30 + i, education_level=None),
         "probability": i / 10, "decision": i % 2,
         "actual": (i % 3 == 0) * 1 if i % 2 == 0 else None,
         "feedback_at": start + timedelta(hours=1, minutes=i) if i % 2 == 0 else None}
        for i in range(n)]


def snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every row, by id, with the columns the released schema had."""
    table = released_table("0001")
    with engine.connect() as conn:
        rows = conn.execute(select(*[predictions.c[c.name] for c in table.columns]))
        return {str(r.prediction_id): dict(r._mapping) for r in rows}


def shape(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    columns = {c["name"]: c["type"] for c in inspector.get_columns("predictions")}
    with engine.connect() as conn:
        revision = migrations.current(conn)
    return {"columns": set(columns), "id_type": type(columns["prediction_id"]).__name__,
            "indexes": {i["name"]: i["column_names"] for i in inspector.get_indexes("predictions")},
            "revision": revision}


def differences(engine: Engine, target: MetaData = metadata) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "version_table": migrations.VERSION_TABLE})
        return compare_metadata(context, target)


def id_column_type(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'predictions' AND column_name = 'prediction_id'")).scalar_one()


def assert_at_head(engine: Engine) -> None:
    now = shape(engine)
    assert now["revision"] == migrations.head() == "0005"
    assert {"feedback_by", "feedback_trusted", "value", "interval_low",
            "interval_high"} <= now["columns"]
    assert now["indexes"][NEW_INDEX] == ["model_version", "created_at"]
    assert OLD_INDEX not in now["indexes"]
    if engine.dialect.name == "postgresql":
        assert id_column_type(engine) == "uuid"
    assert differences(engine) == []


def statements_during(engine: Engine, action: Any) -> list[str]:
    seen: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    return seen


def new_record(age: int, version: str = "2") -> PredictionRecord:
    return PredictionRecord(str(uuid.uuid4()), "churn-classifier", version,
                            valid_record(customer_age=age), probability=0.9, decision=1)


@pytest.mark.parametrize("made_by", ["create_all", "migration 0001"])
def test_a_released_log_with_data_upgrades_keeping_every_row(
    store: PredictionStore, made_by: str,
) -> None:
    engine = store.engine
    table = released_table("0001")
    if made_by == "create_all":
        table.metadata.create_all(engine)
    else:
        migrations.upgrade(engine, "0001")
        assert differences(engine, table.metadata) == []  # 0001 is the released schema
    rows = old_rows()
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    before = snapshot(engine)
    assert shape(engine)["indexes"][OLD_INDEX] == ["model_version"]

    store.migrate()

    assert_at_head(engine)
    assert snapshot(engine) == before
    assert store.count() == len(rows)
    with engine.connect() as conn:
        provenance = conn.execute(select(predictions.c.feedback_by,
                                         predictions.c.feedback_trusted)).all()
    assert provenance == [(None, None)] * len(rows)  # sender unknown: not trusted
    # The current store works on it: COPY (PostgreSQL) or INSERT, feedback, the readers.
    fresh = [new_record(60), new_record(61)]
    assert store.log(fresh) == 2
    unlabelled, labelled = rows[1], rows[0]
    assert store.record_feedback(unlabelled["prediction_id"], 1, sent_by="billing",
                                 trusted=True) is FeedbackResult.RECORDED
    assert store.record_feedback(fresh[0].prediction_id, 0, sent_by="crm",
                                 trusted=False) is FeedbackResult.RECORDED
    assert store.record_feedback(labelled["prediction_id"], labelled["actual"]) \
        is FeedbackResult.UNCHANGED
    assert store.record_feedback(str(uuid.uuid4()), 1) is FeedbackResult.UNKNOWN_ID
    assert store.count() == len(rows) + 2
    taught = store.labelled(100)
    assert taught["prediction_id"].tolist() == [unlabelled["prediction_id"]]
    assert taught["feedback_by"].tolist() == ["billing"]
    window = store.recent(10, model_version="2")
    assert window["prediction_id"].tolist()[-2:] == [r.prediction_id for r in fresh]
    # A regression model's rows beside them: a number predicted, a number as the outcome.
    priced = PredictionRecord(str(uuid.uuid4()), "flight-prices", "1", {"days_left": 3},
                              probability=None, decision=None, value=5123.5,
                              interval_low=4100.0, interval_high=6150.25)
    assert store.log([priced]) == 1
    assert store.record_feedback(priced.prediction_id, 4980.25, sent_by="billing") \
        is FeedbackResult.RECORDED
    assert store.record_feedback(priced.prediction_id, 4980.25, sent_by="billing") \
        is FeedbackResult.UNCHANGED
    assert store.record_feedback(priced.prediction_id, 4980.3) is FeedbackResult.CONFLICT
    row = store.recent(1, model_version="1").iloc[0]
    assert (row["value"], row["actual"]) == (5123.5, 4980.25)
    assert (row["interval_low"], row["interval_high"]) == (4100.0, 6150.25)
    assert row["probability"] is None or np.isnan(row["probability"])


def test_numbers_logged_before_intervals_keep_their_rows_and_new_ones_get_theirs(
    store: PredictionStore,
) -> None:
    """0005 adds the interval's columns in place: a regression row logged at 0004 keeps
    its number and outcome (interval empty); rows logged after carry theirs."""
    engine = store.engine
    migrations.upgrade(engine, "0004")
    before_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO predictions (prediction_id, created_at, model_name, model_version, "
            "features, value, actual, feedback_trusted) VALUES (:id, :at, 'flight-prices', "
            "'1', '{}', 5123.5, 4980.25, :trusted)"),
            {"id": before_id, "at": datetime(2026, 12, 1, tzinfo=UTC), "trusted": True})

    store.migrate()

    assert_at_head(engine)
    after = PredictionRecord(str(uuid.uuid4()), "flight-prices", "1", {}, probability=None,
                             decision=None, value=7000.0, interval_low=6000.0,
                             interval_high=8100.5)
    assert store.log([after]) == 1
    window = store.recent(10, model_version="1").set_index("prediction_id")
    assert (window.loc[before_id, "value"], window.loc[before_id, "actual"]) == (5123.5,
                                                                                 4980.25)
    assert window.loc[before_id, ["interval_low", "interval_high"]].isna().all()
    assert tuple(window.loc[after.prediction_id, ["interval_low", "interval_high"]]) == (
        6000.0, 8100.5)


@pytest.mark.parametrize(("made_as", "detected"), [
    ("0001", ("0001", False)),
    ("0002", ("0002", False)),
    ("0003", ("0002", True)),
    ("0001 + feedback columns by ALTER", ("0001", True)),
])
def test_a_table_made_by_create_all_is_stamped_and_upgraded(
    store: PredictionStore, made_as: str, detected: tuple[str, bool],
) -> None:
    engine = store.engine
    table = released_table(made_as.split()[0])
    table.metadata.create_all(engine)
    if "ALTER" in made_as:
        add_feedback_columns_as_51dddc1_did(engine)
    rows = old_rows(3)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    before = snapshot(engine)
    with engine.connect() as conn:
        assert migrations.current(conn) is None
        assert migrations.legacy_shape(conn) == detected

    store.migrate()

    assert_at_head(engine)
    assert snapshot(engine) == before


def test_a_table_no_release_made_is_refused_untouched(store: PredictionStore) -> None:
    engine = store.engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE predictions (prediction_id VARCHAR(36) PRIMARY KEY, "
                          "created_at TIMESTAMP, model_version VARCHAR(50))"))
    with pytest.raises(migrations.UnknownSchemaError, match="lacks the columns"):
        store.migrate()
    assert set(inspect(engine).get_table_names()) == {"predictions"}


@pytest.mark.postgres
def test_a_uuid_table_with_the_old_index_is_refused(pg_store: PredictionStore) -> None:
    engine = pg_store.engine
    table = released_table("0002")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {NEW_INDEX}"))
        conn.execute(text(f"CREATE INDEX {OLD_INDEX} ON predictions (model_version)"))
    with pytest.raises(migrations.UnknownSchemaError, match="neither"):
        pg_store.migrate()
    assert migrations.VERSION_TABLE not in inspect(engine).get_table_names()


def test_a_fresh_database_gets_what_metadata_describes(store: PredictionStore) -> None:
    engine = store.engine
    # The comparison sees a difference where there is one.
    migrations.upgrade(engine, "0003")
    assert differences(engine, released_table("0003").metadata) == []
    # Alembic lists an added column as a tuple, a changed one as a list of tuples.
    kinds = {change[0] for found in differences(engine)
             for change in (found if isinstance(found, list) else [found])}
    assert kinds == {"add_column", "modify_nullable", "modify_type"}
    store.migrate()
    assert_at_head(engine)
    assert set(inspect(engine).get_table_names()) == {"predictions", migrations.VERSION_TABLE}


@pytest.mark.parametrize("start", ["empty", "released 0001 table"])
def test_running_twice_changes_nothing(store: PredictionStore, start: str) -> None:
    engine = store.engine
    if start != "empty":
        table = released_table("0001")
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), old_rows(3))
    store.migrate()
    first, rows = shape(engine), snapshot(engine)

    statements = statements_during(engine, store.migrate)

    assert shape(engine) == first and snapshot(engine) == rows
    # At head already: one look at the version table, no lock, nothing written.
    assert any(migrations.VERSION_TABLE in s for s in statements)
    writes = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE", "BEGIN")
    assert [s for s in statements if s.lstrip().upper().startswith(writes)] == []
    assert not any("advisory" in s for s in statements)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {migrations.VERSION_TABLE}")) \
            .scalar_one() == 1


def test_downgrade_to_0001_and_back_keeps_the_rows(store: PredictionStore) -> None:
    engine = store.engine
    store.migrate()
    table = released_table("0001")
    rows = old_rows()
    with engine.begin() as conn:
        conn.execute(predictions.insert(), rows)
    assert store.record_feedback(rows[1]["prediction_id"], 1, sent_by="billing") \
        is FeedbackResult.RECORDED
    before = snapshot(engine)

    migrations.downgrade(engine, "0001")

    old = shape(engine)
    assert old["revision"] == "0001"
    assert old["columns"] == {c.name for c in table.columns}
    assert old["indexes"] == {"ix_predictions_created_at": ["created_at"],
                              OLD_INDEX: ["model_version"]}
    if engine.dialect.name == "postgresql":
        assert id_column_type(engine) == "character varying"
    assert differences(engine, table.metadata) == []
    assert snapshot(engine) == before

    migrations.upgrade(engine)

    assert_at_head(engine)
    assert snapshot(engine) == before
    assert store.labelled(10).empty  # who sent the label went with the columns
    migrations.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {migrations.VERSION_TABLE}


# A process that starts the store: connects, says so, waits for the word, migrates.
_STARTER = """
import sys
from core.store import PredictionStore
store = PredictionStore(sys.argv[1])
store.ping()
print("ready", flush=True)
sys.stdin.readline()
store.migrate()
print("done", flush=True)
"""


def fill_with_released_table(store: PredictionStore, start: str) -> int:
    if start == "empty":
        return 0
    table = released_table("0001")
    table.metadata.create_all(store.engine)
    with store.engine.begin() as conn:
        conn.execute(table.insert(), old_rows(3))
    return 3


def assert_one_clean_head(store: PredictionStore, rows: int) -> None:
    assert_at_head(store.engine)
    assert store.count() == rows
    with store.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {migrations.VERSION_TABLE}")) \
            .scalar_one() == 1


@pytest.mark.parametrize("start", ["empty", "released 0001 table"])
def test_processes_starting_at_once_all_succeed(store: PredictionStore, start: str) -> None:
    """Predictor workers, the exporter and the setup step may all start together."""
    rows = fill_with_released_table(store, start)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    starters = [subprocess.Popen([sys.executable, "-c", _STARTER, store.url], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for starter in starters:
            assert starter.stdout is not None and starter.stdout.readline() == "ready\n"
        for starter in starters:  # all connected and imported: go, as close together as can be
            assert starter.stdin is not None
            starter.stdin.write("\n")
            starter.stdin.flush()
        outcomes = [starter.communicate(timeout=60) for starter in starters]
    finally:
        for starter in starters:
            starter.kill()
            starter.wait()
    assert [(s.returncode, out) for s, (out, _) in zip(starters, outcomes, strict=True)] == \
        [(0, "done\n")] * len(starters), [err for _, err in outcomes]
    assert_one_clean_head(store, rows)


def test_threads_starting_at_once_all_succeed(store: PredictionStore, tmp_path: Path) -> None:
    """Threads of one process too, on this database and another one: Alembic's context
    is a process global, which no database's lock guards."""
    rows = fill_with_released_table(store, "released 0001 table")
    elsewhere = PredictionStore(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    others = [PredictionStore(url) for url in [store.url, elsewhere.url] * 3]
    barrier = threading.Barrier(len(others))
    failures: list[BaseException] = []

    def start_one(other: PredictionStore) -> None:
        barrier.wait()
        try:
            other.migrate()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start_one, args=(o,)) for o in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for other in others:
        other.dispose()
    assert failures == []
    assert_one_clean_head(store, rows)
    assert_one_clean_head(elsewhere, 0)
    elsewhere.dispose()


def test_a_database_a_newer_version_migrated_is_left_alone(
    store: PredictionStore, caplog: pytest.LogCaptureFixture,
) -> None:
    """Older code started on a newer schema (an image rolled back) does not fail."""
    engine = store.engine
    store.migrate()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    before = shape(engine)
    with caplog.at_level("WARNING", logger="core.migrations"):
        store.migrate()
    assert shape(engine) == before and before["revision"] == "9999"
    assert "revision 9999, which this version does not know" in caplog.text


def test_by_hand_from_the_command_line(store: PredictionStore,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    migrations_cli(["--url", store.url, "current"])
    assert capsys.readouterr().out.strip() == "none (head: 0005)"
    migrations_cli(["--url", store.url, "upgrade", "0002"])
    assert capsys.readouterr().out.strip() == "0002 (head: 0005)"
    migrations_cli(["--url", store.url, "upgrade"])
    assert capsys.readouterr().out.strip() == "0005 (head: 0005)"
    migrations_cli(["--url", store.url, "downgrade", "0001"])
    assert capsys.readouterr().out.strip() == "0001 (head: 0005)"
    assert differences(store.engine, released_table("0001").metadata) == []


# --- readers only read: migrations run where a stack is set up ------------------------------

@pytest.mark.parametrize("made_by", ["migration 0002", "create_all 0001"])
def test_a_reader_on_an_old_schema_stops_saying_to_run_the_migrations_and_changes_nothing(
    store: PredictionStore, made_by: str,
) -> None:
    engine = store.engine
    if made_by == "migration 0002":
        migrations.upgrade(engine, "0002")
    else:
        released_table("0001").metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(released_table("0001").insert(), old_rows(3))
    before, rows = shape(engine), snapshot(engine)
    reader = PredictionStore(store.url)
    try:
        for read in (lambda: reader.recent(10), lambda: reader.labelled(10), reader.count):
            with pytest.raises(migrations.NotMigrated) as refused:
                read()
            assert "python -m core.migrations upgrade" in str(refused.value)
            assert not refused.value.empty
    finally:
        reader.dispose()
    assert shape(engine) == before and snapshot(engine) == rows
    shown = "revision 0002" if made_by == "migration 0002" else "from before migrations"
    assert shown in str(refused.value) and "revision 0005" in str(refused.value)


def test_a_reader_on_an_empty_database_reads_nothing_and_creates_nothing(
    store: PredictionStore,
) -> None:
    assert store.recent(10).empty and store.labelled(10).empty and store.count() == 0
    assert inspect(store.engine).get_table_names() == []
    store.migrate()  # what setup does: then the same reads work on the tables
    store.log([new_record(40)])
    assert store.count() == 1 and len(store.recent(10)) == 1
