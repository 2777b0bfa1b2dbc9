"""The prediction log on SQLite and on a real PostgreSQL server (a database per test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.store import (
    FeedbackResult,
    PredictionBatch,
    PredictionRecord,
    PredictionStore,
    predictions,
)
from tests.factories import valid_record


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'predictions.db'}"
    else:
        url = request.getfixturevalue("postgres_url").replace(
            "postgresql://", "postgresql+psycopg2://")
    store = PredictionStore(url)
    store.migrate()
    store.migrate()  # idempotent
    yield store
    store.dispose()


def record(age: int, at: datetime, version: str = "1") -> PredictionRecord:
    return PredictionRecord(str(uuid.uuid4()), "churn-classifier", version,
                            valid_record(customer_age=age, education_level=None),
                            probability=age / 100, decision=int(age > 50), created_at=at)


def test_log_and_read_back_newest_window_in_time_order(store: PredictionStore) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = [record(20 + i, start + timedelta(seconds=i)) for i in range(30)]
    assert store.log(records[:10]) == 10
    assert store.log(records[10:]) == 20
    assert store.count() == 30
    window = store.recent(5)
    assert window["customer_age"].tolist() == [45, 46, 47, 48, 49]
    assert window["prediction_id"].tolist() == [r.prediction_id for r in records[-5:]]
    assert window["probability"].tolist() == pytest.approx([0.45, 0.46, 0.47, 0.48, 0.49])
    assert window["education_level"].isna().all()
    assert window["actual"].isna().all()
    assert len(store.recent(100, since=start + timedelta(seconds=25))) == 5
    assert sorted(store.ids()) == sorted(r.prediction_id for r in records)


def test_window_can_be_limited_to_one_model_version(store: PredictionStore) -> None:
    now = datetime.now(UTC)
    store.log([record(30 + i, now + timedelta(seconds=i), version)
               for i, version in enumerate(["1", "2", "2"])])
    assert store.recent(10, model_version="2")["customer_age"].tolist() == [31, 32]


def test_feedback_is_stored_next_to_the_prediction(store: PredictionStore) -> None:
    first = record(40, datetime.now(UTC))
    store.log([first])
    assert store.record_feedback(first.prediction_id, 1) is FeedbackResult.RECORDED
    assert store.record_feedback(first.prediction_id, 1) is FeedbackResult.UNCHANGED
    assert store.record_feedback(first.prediction_id, 0) is FeedbackResult.CONFLICT
    assert store.record_feedback(str(uuid.uuid4()), 1) is FeedbackResult.UNKNOWN_ID
    assert store.recent(1)["actual"].tolist() == [1]


def test_a_replayed_prediction_is_not_written_twice(store: PredictionStore) -> None:
    first, second = record(40, datetime.now(UTC)), record(41, datetime.now(UTC))
    store.log([first])
    store.log([first, second])  # a batch replayed after its first write did commit
    assert store.count() == 2
    assert sorted(store.ids()) == sorted([first.prediction_id, second.prediction_id])


def test_a_large_batch_is_a_few_multi_row_inserts_and_skips_known_ids(
    store: PredictionStore,
) -> None:
    from sqlalchemy import event

    start = datetime(2026, 2, 1, tzinfo=UTC)
    records = [record(20 + i % 50, start + timedelta(milliseconds=i)) for i in range(2500)]
    store.log(records[:100])
    inserts: list[int] = []

    def count_inserts(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(1)

    event.listen(store.engine, "before_cursor_execute", count_inserts)
    try:
        store.log(records)  # the first 100 are already there
    finally:
        event.remove(store.engine, "before_cursor_execute", count_inserts)
    assert store.count() == 2500
    assert sorted(store.ids()) == sorted(r.prediction_id for r in records)
    # One statement per page of rows, not one round trip per row (the writer thread's
    # throughput under load depends on it); PostgreSQL takes the batch by COPY, outside
    # SQLAlchemy's statements.
    limit = 0 if store.engine.dialect.name == "postgresql" else 10
    assert len(inserts) <= limit, len(inserts)


def test_a_columnwise_batch_logs_like_its_records_even_with_characters_copy_escapes(
    store: PredictionStore,
) -> None:
    """The predictor logs a request as one PredictionBatch; PostgreSQL takes it by COPY
    in text format, where a backslash, tab or newline must not shift or eat a column."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    awkward = ["back\\slash", "tab\there", "new\nline", "quote\"s", "carriage\rreturn", "é✓"]
    features = [valid_record(customer_age=30 + i, marital_status=text, education_level=None)
                for i, text in enumerate(awkward)]
    batch = PredictionBatch("model\\with\ttab", "7", at, [str(uuid.uuid4()) for _ in awkward],
                            features, [0.125 * i for i in range(6)], [0, 0, 0, 0, 1, 1])
    assert len(batch) == 6 and batch[2].features["marital_status"] == "new\nline"
    assert store.log_chunks([batch, [record(60, at)]]) == 7
    store.log(batch)  # replayed whole: nothing written twice
    assert store.count() == 7
    # One request's rows share a timestamp: put them back in the batch's order by id.
    window = store.recent(10, model_version="7").set_index("prediction_id").loc[
        batch.prediction_ids]
    assert window["marital_status"].tolist() == awkward
    assert window["customer_age"].tolist() == [30, 31, 32, 33, 34, 35]
    assert window["probability"].tolist() == pytest.approx(batch.probabilities)
    assert window["decision"].tolist() == batch.decisions
    assert window["education_level"].isna().all()
    assert {pd.Timestamp(t).replace(tzinfo=None) for t in window["created_at"]} == {
        pd.Timestamp(at).replace(tzinfo=None)}  # SQLite gives it back without its zone
    assert [r.prediction_id for r in batch] == batch.prediction_ids
    assert batch[1:3] == [batch[1], batch[2]]

    # A plain model name takes the one-pass path: the same text must come back, and an
    # integer beyond 64 bits (orjson refuses it) must still be written.
    plain = PredictionBatch("churn-classifier", "8", at, [str(uuid.uuid4()) for _ in awkward],
                            [{**f, "customer_age": 10**30 if i == 3 else f["customer_age"]}
                             for i, f in enumerate(features)],
                            [0.5] * 6, [1] * 6)
    assert store.log(plain) == 6
    window = store.recent(10, model_version="8").set_index("prediction_id").loc[
        plain.prediction_ids]
    assert window["marital_status"].tolist() == awkward
    assert window["customer_age"].tolist() == [30, 31, 32, 10**30, 34, 35]


def test_a_table_from_before_senders_were_recorded_gains_the_columns(
    store: PredictionStore,
) -> None:
    """An existing log (made before labels recorded their sender, and before migrations)
    keeps its rows; its old labels, sender unknown, no longer teach; new labels do."""
    from sqlalchemy import text

    from core import migrations

    old = record(40, datetime(2026, 1, 1, tzinfo=UTC))
    new = record(41, datetime(2026, 1, 2, tzinfo=UTC))
    # The table as 1d4cdf0 made it (revision 0002's shape, no version table), with rows.
    migrations.downgrade(store.engine, "0002")
    with store.engine.begin() as conn:
        for r in (old, new):
            conn.execute(predictions.insert().values(
                prediction_id=r.prediction_id, created_at=r.created_at,
                model_name=r.model_name, model_version=r.model_version,
                features=r.features, probability=r.probability, decision=r.decision,
                actual=1))
        conn.execute(text(f"DROP TABLE {migrations.VERSION_TABLE}"))
    store.migrate()
    assert store.count() == 2 and store.labelled(10).empty
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE predictions SET actual = NULL WHERE prediction_id = :id"),
                     {"id": new.prediction_id})
    assert store.record_feedback(new.prediction_id, 0, sent_by="billing",
                                 trusted=True) is FeedbackResult.RECORDED
    labelled = store.labelled(10)
    assert labelled["prediction_id"].tolist() == [new.prediction_id]
    assert labelled["feedback_by"].tolist() == ["billing"]


def test_two_businesses_rows_stay_apart(store: PredictionStore) -> None:
    """Versions are numbered per registered model, so churn v1 and a price model v1 share
    a version: their windows, their training rows and their feedback stay apart by name."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    churn = PredictionRecord(str(uuid.uuid4()), "churn-classifier", "1", valid_record(),
                             0.7, 1, at)
    price = PredictionRecord(str(uuid.uuid4()), "flight-prices", "1", {"days_left": 3},
                             None, None, at, value=5123.5)
    store.log([churn, price])
    window = store.recent(10, model_version="1", model_name="flight-prices")
    assert window["prediction_id"].tolist() == [price.prediction_id]
    assert store.record_feedback(churn.prediction_id, 4980.0, model_name="flight-prices") \
        is FeedbackResult.OTHER_MODEL
    assert store.record_feedback(price.prediction_id, 4980.0, model_name="flight-prices") \
        is FeedbackResult.RECORDED
    assert store.record_feedback(churn.prediction_id, 1, model_name="churn-classifier") \
        is FeedbackResult.RECORDED
    assert store.labelled(10, model_name="churn-classifier")["prediction_id"].tolist() == [
        churn.prediction_id]
    assert len(store.labelled(10)) == 2
