"""Drift reports: HTML per window against the champion's reference, and the index page."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from core import registry
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from core.store import PredictionRecord, PredictionStore
from reporting.report import EmptyWindow, report_latest_window, write_report
from simulation.generator import SCENARIOS, generate
from simulation.traffic import records_from_frame
from tests.conftest import settings_for

pytestmark = pytest.mark.slow


def window(champion: registry.LoadedModel, schema: Schema, rows: int, seed: int,
           scenario: str = "none") -> pd.DataFrame:
    frame = generate(rows, seed, SCENARIOS[scenario], schema)
    frame[PREDICTION_COLUMN] = champion.predict_proba(model_frame(schema, frame))
    return frame


def test_reference_sample_travels_with_the_model(champion: registry.LoadedModel,
                                                 schema: Schema) -> None:
    reference = champion.reference()
    assert len(reference) > 1000
    assert set(schema.feature_names) <= set(reference.columns)
    assert reference[PREDICTION_COLUMN].between(0, 1).all()


def test_drifted_window_names_the_drifted_features_and_clean_one_none(
    champion: registry.LoadedModel, schema: Schema, tmp_path: Path
) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    clean = write_report(window(champion, schema, 2000, seed=11), champion, tmp_path,
                         title="clean", now=t0)
    drifted = write_report(window(champion, schema, 2000, seed=12, scenario="economic_shift"),
                           champion, tmp_path, title="drifted", now=t0 + timedelta(hours=1))

    assert clean.summary_data["drifted_features"] == []
    assert clean.summary_data["drift_share"] == 0.0
    assert set(drifted.summary_data["drifted_features"]) == {
        "customer_age", "credit_limit", "total_revolving_bal"}
    assert drifted.summary_data["drift_share"] == pytest.approx(3 / 11)
    assert drifted.summary_data["model_version"] == "1"
    # Self-contained HTML, and the JSON summary beside it.
    page = drifted.html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") or "<html" in page[:500].lower()
    assert "credit_limit" in page
    assert json.loads(drifted.summary.read_text())["report"] == drifted.html.name

    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "2 report(s)" in index
    # Newest first, each linking its report.
    assert index.index(drifted.html.name) < index.index(clean.html.name)
    assert "customer_age, credit_limit, total_revolving_bal" in index


def test_report_of_the_latest_logged_window(trained_home: Path, tmp_path: Path,
                                            schema: Schema,
                                            champion: registry.LoadedModel) -> None:
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = settings_for(trained_home, PREDICTION_STORE_URL=store_url,
                            REPORTS_DIR=str(tmp_path / "reports"),
                            MODEL_CACHE_DIR=str(tmp_path / "cache"))
    with pytest.raises(EmptyWindow):
        report_latest_window(settings, window_rows=500)

    # Old clean traffic, then 1,200 newer rows of premium-card drift: the window of 1,200
    # must see only the newer rows.
    store = PredictionStore(store_url)
    start = datetime.now(UTC) - timedelta(hours=2)
    frames = [window(champion, schema, 1500, seed=21),
              window(champion, schema, 1200, seed=22, scenario="premium_cards")]
    rows = pd.concat(frames, ignore_index=True)
    store.log([
        PredictionRecord(str(uuid.uuid4()), "churn-classifier", "1", rec,
                         float(p), int(p >= 0.5), start + timedelta(seconds=i))
        for i, (rec, p) in enumerate(zip(records_from_frame(rows, schema),
                                         rows[PREDICTION_COLUMN], strict=True))
    ])
    store.dispose()
    files = report_latest_window(settings, window_rows=1200)
    assert files.summary_data["current_rows"] == 1200
    assert files.summary_data["drifted_features"] == ["card_category"]
    assert files.html.parent == tmp_path / "reports"
    assert files.quality_html is None  # no feedback yet
    assert "no labels yet" in files.index.read_text(encoding="utf-8")


def test_labelled_window_gets_a_classification_quality_report(
    trained_home: Path, tmp_path: Path, schema: Schema, champion: registry.LoadedModel
) -> None:
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = settings_for(trained_home, PREDICTION_STORE_URL=store_url,
                            REPORTS_DIR=str(tmp_path / "reports"),
                            MODEL_CACHE_DIR=str(tmp_path / "cache"))
    frame = window(champion, schema, 600, seed=31)
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = [str(uuid.uuid4()) for _ in range(len(frame))]
    store = PredictionStore(store_url)
    store.create_schema()
    store.log([
        PredictionRecord(pid, "churn-classifier", "1", rec, float(p),
                         int(p >= champion.threshold), start + timedelta(seconds=i))
        for i, (pid, rec, p) in enumerate(zip(ids, records_from_frame(frame, schema),
                                              frame[PREDICTION_COLUMN], strict=True))
    ])
    # The real outcome arrives for the first 400 predictions only.
    for pid, outcome in zip(ids[:400], frame[schema.target][:400], strict=True):
        store.record_feedback(pid, int(outcome))
    store.dispose()

    files = report_latest_window(settings, window_rows=600)

    quality = files.summary_data["quality"]
    assert quality["labels"] == 400
    labelled = frame.iloc[:400]
    assert quality["auc"] == pytest.approx(
        roc_auc_score(labelled[schema.target], labelled[PREDICTION_COLUMN]), abs=1e-9)
    assert quality["auc"] > 0.6  # the champion really separates churners here
    assert files.quality_html is not None and files.quality_html.exists()
    page = files.quality_html.read_text(encoding="utf-8")
    assert "<html" in page[:1000].lower() and "ROC" in page
    index = files.index.read_text(encoding="utf-8")
    assert f'href="{files.quality_html.name}"' in index
    assert f"{quality['auc']:.3f}" in index
