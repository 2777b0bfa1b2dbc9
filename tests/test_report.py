"""Drift reports: HTML per window against the champion's reference, and the index page."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

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
