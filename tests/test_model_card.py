"""The model card the train flow writes for every registered version: its figures, its
files, its links from MLflow, and the page as a browser shows it."""

from __future__ import annotations

import html
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from core import registry
from core.calibration import expected_calibration_error
from core.schema import Schema, model_frame
from core.store import PredictionRecord, PredictionStore
from core.task import task_of
from orchestration.train import split_data
from reporting import model_card
from simulation.generator import generate
from simulation.loader import load_dataset
from simulation.traffic import records_from_frame
from tests import browser
from tests.conftest import run_train_flow, settings_for
from tests.factories import write_training_csv

BASE_ROWS = 3000
PRODUCTION_ROWS = 300
PRODUCTION_START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


# --- the statistics, on their own ----------------------------------------------------


def test_a_perfect_classifier_has_an_auc_interval_of_one() -> None:
    y = np.array([0] * 60 + [1] * 40)
    scores = y + np.linspace(0, 0.5, len(y))
    assert model_card.auc_confidence_interval(y, scores) == (1.0, 1.0)


def test_a_random_classifier_interval_brackets_one_half() -> None:
    rng = np.random.default_rng(7)
    y, scores = rng.integers(0, 2, 800), rng.random(800)
    low, high = model_card.auc_confidence_interval(y, scores)
    assert low < 0.5 < high
    assert high - low < 0.15  # 800 rows pin an AUC to about +-0.04


def test_a_useful_classifier_interval_excludes_one_half_and_holds_its_auc() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 1000)
    scores = np.round(rng.random(1000) + 0.6 * y, 1)  # rounded: many ties
    auc = model_card.rank_auc(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    low, high = model_card.auc_confidence_interval(y, scores)
    assert 0.5 < low < auc < high
    # The same resamples (fixed seed) give the same interval.
    assert model_card.auc_confidence_interval(y, scores) == (low, high)


def test_the_paired_difference_of_a_model_with_itself_is_zero_and_a_better_one_positive(
) -> None:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 1000)
    weak, strong = rng.random(1000) + 0.2 * y, rng.random(1000) + 1.0 * y
    assert model_card.auc_difference_interval(y, weak, weak) == (0.0, 0.0)
    low, high = model_card.auc_difference_interval(y, strong, weak)
    assert 0 < low < high


def test_the_bootstrap_of_a_large_holdout_centres_on_each_models_auc() -> None:
    """A large holdout in one call (its cost is in the train flow's timing, `make
    bench-train`; never a timed assertion here)."""
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 20_000)
    candidate, champion = rng.random(20_000) + 0.5 * y, rng.random(20_000) + 0.4 * y
    aucs = model_card.bootstrap_aucs(y, candidate, champion)
    assert aucs.shape == (2, model_card.BOOTSTRAP_RESAMPLES)
    for resampled, scores in zip(aucs, (candidate, champion), strict=True):
        assert resampled.mean() == pytest.approx(roc_auc_score(y, scores), abs=0.002)
        assert 0.001 < resampled.std() < 0.01
    assert (aucs[0] > aucs[1]).mean() > 0.99


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_an_errors_bootstrap_matches_resampling_the_rows_and_pairs_two_models(
        metric: str) -> None:
    """The weights bootstrap of an error equals the error of the resampled rows, and its
    paired difference keeps a better model's sign."""
    from core.bootstrap import resample_weights
    from core.task import Metric
    from reporting.model_card.statistics import bootstrap_scores

    error = Metric(metric, greater_is_better=False)
    rng = np.random.default_rng(11)
    y = rng.normal(100, 20, 600)
    close, far = y + rng.normal(0, 5, 600), y + rng.normal(0, 8, 600)
    assert bootstrap_scores(error, y, close, resamples=1, seed=3)[0][0] == pytest.approx(
        error.score(y[_drawn(600, seed=3)], close[_drawn(600, seed=3)]))
    close_errors, far_errors = bootstrap_scores(error, y, close, far)
    assert (close_errors < far_errors).mean() > 0.99
    assert close_errors.mean() == pytest.approx(error.score(y, close), rel=0.02)
    assert next(resample_weights(600, 1, 3)).sum() == 600


def test_r2_under_weights_keeps_its_digits_when_the_mean_dwarfs_the_spread() -> None:
    from core.bootstrap import weighted_r2
    from core.task import regression_metrics

    rng = np.random.default_rng(12)
    y = rng.normal(0, 1_000, 500)
    predicted = y + rng.normal(0, 300, 500)
    ones = np.ones((1, 500))
    expected = regression_metrics(y, predicted)["r2"]
    for offset in (0.0, 1e9):  # a price in the billions that varies by thousands
        assert weighted_r2(y + offset, predicted + offset, ones)[0] == pytest.approx(
            expected, abs=1e-6)


def test_residual_segments_of_text_with_many_values_keep_the_frequent_ones() -> None:
    import pandas as pd

    from reporting.model_card.statistics import (
        OTHER_VALUES,
        SEGMENT_BY_VALUE_MAX,
        residuals_by_segment,
    )

    cities = [f"city-{i:02d}" for i in range(30)]
    rng = np.random.default_rng(13)
    frame = pd.DataFrame({"city": rng.choice(cities, 600, p=np.r_[[0.3], [0.7 / 29] * 29]),
                          "size": rng.normal(50, 10, 600)})
    actual = rng.normal(100, 10, 600)
    segments = residuals_by_segment(frame, actual, actual + 1.0, ["city", "size"])
    by_city = [s for s in segments if s.feature == "city"]
    assert len(by_city) == SEGMENT_BY_VALUE_MAX and by_city[0].segment == "city-00"
    assert by_city[-1].segment == OTHER_VALUES
    assert sum(s.rows for s in by_city) == 600
    assert all(s.mean_residual == pytest.approx(1.0) for s in segments)
    assert len([s for s in segments if s.feature == "size"]) == 4  # quartiles


def test_the_roc_and_precision_recall_curves_hold_their_areas() -> None:
    from reporting.model_card.statistics import CURVE_MAX_POINTS, holdout_curves

    rng = np.random.default_rng(14)
    y = rng.integers(0, 2, 150)
    scores = np.round(rng.random(150) + 0.5 * y, 2)  # rounded: ties
    curves = holdout_curves(y, scores)
    assert curves is not None
    assert curves.auc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert curves.average_precision == pytest.approx(average_precision_score(y, scores))
    assert curves.positive_rate == pytest.approx(y.mean())
    # The ROC curve runs from (0, 0) to (1, 1), and its area (trapezoids: ties are
    # diagonals) is the AUC.
    assert curves.roc[0] == (0.0, 0.0) and curves.roc[-1] == (1.0, 1.0)
    fpr, tpr = np.array(curves.roc).T
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(curves.auc)
    # The precision-recall staircase: its area is the average precision.
    recall, precision = np.array(curves.pr).T
    assert float(np.sum(-np.diff(recall) * precision[1:])) == pytest.approx(
        curves.average_precision)
    # A large holdout is drawn with a bounded number of points, its ends kept.
    big = rng.integers(0, 2, 20_000)
    large = holdout_curves(big, rng.random(20_000) + 0.3 * big)
    assert large is not None and len(large.roc) <= CURVE_MAX_POINTS
    assert len(large.pr) <= CURVE_MAX_POINTS
    assert large.roc[0] == (0.0, 0.0) and large.roc[-1] == (1.0, 1.0)
    assert holdout_curves(np.ones(20), rng.random(20)) is None  # one class: no curves


def test_a_data_path_is_shown_without_the_training_machines_folders() -> None:
    from reporting.model_card.card import shown_path

    assert shown_path("/srv/onebox/data/churn.csv", "/srv/onebox") == "data/churn.csv"
    assert shown_path("/home/someone/tables/churn.csv", "/srv/onebox") == "churn.csv"
    assert shown_path("/home/someone/tables/churn.csv", None) == "churn.csv"
    assert shown_path("tables/churn.csv", "/srv/onebox") == "tables/churn.csv"
    data = model_card.TrainingData(base_path="/srv/onebox/data/churn.csv", base_rows=1,
                                   home="/srv/onebox")
    assert data.shown_base_path == "data/churn.csv" and data.under_home


def test_the_mlflow_links_are_the_front_doors() -> None:
    from reporting.model_card.card import mlflow_run_url, mlflow_version_url

    assert mlflow_run_url("3", "ab12") == "/mlflow/#/experiments/3/runs/ab12"
    assert (mlflow_version_url("churn-classifier", "7")
            == "/mlflow/#/models/churn-classifier/versions/7")
    assert mlflow_version_url("a b/c", "1") == "/mlflow/#/models/a%20b%2Fc/versions/1"


def _drawn(rows: int, seed: int) -> np.ndarray:
    """The rows the first bootstrap resample of `seed` draws (as resample_weights does)."""
    return np.random.default_rng(seed).integers(0, rows, size=(1, rows))[0]


# --- cards of real trained versions --------------------------------------------------


def log_labelled_predictions(home: Path, schema: Schema) -> None:
    """Labelled production rows, predicted a minute apart from PRODUCTION_START."""
    settings = settings_for(home)
    frame = generate(PRODUCTION_ROWS, 77, schema=schema)
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    store.migrate()
    records = [PredictionRecord(str(uuid.uuid4()), settings.model_name, "1", record, 0.5, 1,
                                PRODUCTION_START + timedelta(minutes=i))
               for i, record in enumerate(records_from_frame(frame, schema))]
    store.log(records)
    for record, actual in zip(records, frame[schema.target], strict=True):
        store.record_feedback(record.prediction_id, int(actual), sent_by="crm")
    store.dispose()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, schema: Schema) -> dict:
    """v1 promoted with no champion; then labelled production rows, and v2 rejected
    against v1 (a margin nothing can beat)."""
    home = tmp_path_factory.mktemp("model-card-home")
    write_training_csv(settings_for(home).data_path, schema, rows=BASE_ROWS)
    first = run_train_flow(home, trials=2)
    log_labelled_predictions(home, schema)
    second = run_train_flow(home, trials=2, promotion_margin=1.0)
    assert first["promoted"] and not second["promoted"]
    return {"home": home, "first": first, "second": second}


def card_summary(trained: dict, version: str) -> dict:
    settings = settings_for(trained["home"])
    path = model_card.card_summary_path(settings.reports_dir, settings.model_name, version)
    return json.loads(path.read_text(encoding="utf-8"))


def card_page(trained: dict, version: str) -> str:
    settings = settings_for(trained["home"])
    path = model_card.card_path(settings.reports_dir, settings.model_name, version)
    return path.read_text(encoding="utf-8")


def text_of(page: str) -> str:
    """The page's visible words, tags dropped, entities read and whitespace folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.mark.slow
def test_the_card_figures_are_those_of_the_registered_model(trained: dict,
                                                             schema: Schema) -> None:
    settings = settings_for(trained["home"])
    summary = card_summary(trained, "1")
    assert trained["first"]["model_card"] == str(
        model_card.card_path(settings.reports_dir, settings.model_name, "1"))

    # Recomputed here from the registered model and the same split the flow made.
    split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
    loaded = registry.load_version(registry.connect(settings), settings.model_name, "1",
                                   settings.model_cache_dir)
    y = split.holdout[schema.target].to_numpy()
    proba = loaded.predict_proba(model_frame(schema, split.holdout))
    assert summary["holdout_auc"] == pytest.approx(roc_auc_score(y, proba), abs=1e-9)
    assert summary["holdout_auc"] == pytest.approx(trained["first"]["holdout_auc"], abs=1e-9)
    low, high = summary["holdout_auc_ci"]
    assert low < summary["holdout_auc"] < high and high - low < 0.2

    confusion = summary["confusion"]
    counts = [confusion[k] for k in ("true_positive", "false_positive", "false_negative",
                                     "true_negative")]
    assert sum(counts) == summary["holdout_rows"] == len(split.holdout)
    flagged = proba >= loaded.threshold
    assert confusion["threshold"] == loaded.threshold
    assert confusion["true_positive"] == int((flagged & (y == 1)).sum())
    assert confusion["precision"] == pytest.approx(
        confusion["true_positive"] / (confusion["true_positive"] + confusion["false_positive"]))

    # Importance in the schema's names: every feature once, one-hot columns folded back.
    features = [item["feature"] for item in summary["feature_importance"]]
    assert sorted(features) == sorted(schema.feature_names)
    assert all(item["mean_abs_shap"] >= 0 for item in summary["feature_importance"])
    page = card_page(trained, "1")
    assert "card_category_blue" not in page and "gender_M" not in page

    words = text_of(page)
    assert f"AUC {summary['holdout_auc']:.4f}" in words
    assert f"[{low:.4f}, {high:.4f}]" in words
    assert f"{len(split.holdout):,} holdout rows" in words
    assert "promoted" in words and "no champion yet" in words
    # The base table relative to ONEBOX_HOME: no folder of the training machine.
    assert "data/churn.csv (under ONEBOX_HOME)" in words and f"{BASE_ROWS:,}" in words
    assert str(settings.data_path) not in page
    assert "no time column" in words
    assert summary["gate_decision"] == "promoted" and summary["champion_version"] is None
    assert summary["champion_auc"] is None and summary["trials"] == 2
    for feature in schema.features:  # the schema section: each feature, its kind
        assert f"{feature.name} {feature.kind}" in words


@pytest.mark.slow
def test_the_second_version_card_shows_the_gate_evidence_and_the_production_rows(
    trained: dict,
) -> None:
    settings = settings_for(trained["home"])
    summary = card_summary(trained, "2")
    tags = registry.connect(settings).get_model_version(settings.model_name, "2").tags
    assert summary["gate_decision"] == "rejected"
    assert summary["gate_reason"] == tags["gate.reason"] and "does not beat champion v1" in \
        summary["gate_reason"]
    assert summary["champion_version"] == "1"
    assert summary["champion_auc"] == pytest.approx(float(tags["gate.champion_auc"]), abs=1e-6)
    difference_low, difference_high = summary["auc_difference_ci"]
    difference = summary["holdout_auc"] - summary["champion_auc"]
    assert difference_low <= difference <= difference_high
    assert summary["margin"] == 1.0

    words = text_of(card_page(trained, "2"))
    assert "rejected" in words
    assert f"champion v1 AUC {summary['champion_auc']:.4f}" in words
    assert f"{difference:+.4f}" in words
    # The training table: the base CSV plus the labelled production rows, with their period.
    assert f"{PRODUCTION_ROWS:,}" in words
    last = PRODUCTION_START + timedelta(minutes=PRODUCTION_ROWS - 1)
    assert (f"{PRODUCTION_START:%Y-%m-%d %H:%M} UTC to {last:%Y-%m-%d %H:%M} UTC") in words
    # About a fifth of the rows, chosen by row (orchestration.train.stable_holdout).
    expected = (BASE_ROWS + PRODUCTION_ROWS) / 5
    assert abs(summary["holdout_rows"] - expected) < 4 * (expected * 0.8) ** 0.5


@pytest.mark.slow
def test_the_gate_scores_the_champion_on_rows_it_never_trained_on(trained: dict) -> None:
    """v2's holdout is v1's holdout plus a fifth of the new rows: v1 scores on it as on its
    own holdout.  (With a split redrawn at every retrain, v1 scored 0.906 on v2's holdout
    against 0.707 on its own: it had trained on most of those rows, and kept its place.)"""
    first, second = card_summary(trained, "1"), card_summary(trained, "2")
    assert second["holdout_rows"] > first["holdout_rows"]
    assert abs(second["champion_auc"] - first["holdout_auc"]) < 0.03


def version_and_split(trained: dict, schema: Schema, version: str
                      ) -> tuple[registry.LoadedModel, Any]:
    """The registered version as the predictor loads it, and the train flow's split of its
    table (the gate's holdout among it)."""
    settings = settings_for(trained["home"])
    loaded = registry.load_version(registry.connect(settings), settings.model_name, version,
                                   settings.model_cache_dir)
    return loaded, split_data.fn(load_dataset(settings.data_path, schema), schema,
                                 settings.seed)


@pytest.mark.slow
def test_the_card_states_the_calibration_error_before_and_after_platt_scaling(
    trained: dict, schema: Schema,
) -> None:
    summary = card_summary(trained, "1")
    loaded, split = version_and_split(trained, schema, "1")
    y = split.holdout[schema.target].to_numpy()
    frame = model_frame(schema, split.holdout)
    assert summary["ece"] == pytest.approx(
        expected_calibration_error(y, loaded.predict_proba(frame)), abs=1e-9)
    assert summary["ece_uncalibrated"] == pytest.approx(
        expected_calibration_error(y, loaded.predict_raw_proba(frame)), abs=1e-9)
    assert summary["calibration"]["slope"] == pytest.approx(loaded.calibration.slope)
    assert summary["calibration"]["fitted_rows"] == len(split.train) + len(split.valid)
    words = text_of(card_page(trained, "1"))
    assert f"Expected calibration error {summary['ece']:.4f}" in words
    assert f"before it the error was {summary['ece_uncalibrated']:.4f}" in words


@pytest.mark.slow
def test_the_summary_has_what_the_index_reads(trained: dict) -> None:
    settings = settings_for(trained["home"])
    for version, result in (("1", trained["first"]), ("2", trained["second"])):
        summary = card_summary(trained, version)
        assert {"model_name", "version", "created_at", "holdout_auc", "holdout_auc_ci",
                "gate_decision", "gate_reason", "champion_version", "champion_auc", "run_id",
                "card"} <= set(summary)
        assert summary["model_name"] == settings.model_name
        assert summary["version"] == version and summary["run_id"] == result["run_id"]
        assert summary["card"] == f"{settings.model_name}-v{version}.html"
        created = datetime.fromisoformat(summary["created_at"])
        assert created.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - created) < timedelta(hours=1)
        assert (settings.reports_dir / "models" / summary["card"]).is_file()
    # Written aside then renamed: no temporary file is left behind.
    assert sorted(p.name for p in (settings.reports_dir / "models").iterdir()) == sorted(
        f"{settings.model_name}-v{v}.{ext}" for v in ("1", "2") for ext in ("html", "json"))


@pytest.mark.slow
def test_mlflow_links_the_version_to_its_card_and_keeps_the_page_on_the_run(
    trained: dict, tmp_path: Path
) -> None:
    settings = settings_for(trained["home"])
    client = registry.connect(settings)
    for version, result in (("1", trained["first"]), ("2", trained["second"])):
        url = f"/reports/models/{settings.model_name}-v{version}.html"
        described = client.get_model_version(settings.model_name, version)
        assert described.tags[model_card.CARD_TAG] == url
        assert url in described.description
        assert f"{card_summary(trained, version)['holdout_auc']:.4f}" in described.description
        artifact = client.download_artifacts(result["run_id"], model_card.CARD_ARTIFACT,
                                             str(tmp_path / version))
        assert Path(artifact).read_text(encoding="utf-8") == card_page(trained, version)


class _TagBalance(HTMLParser):
    """Every element the page opens is closed, in order (void elements aside)."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'} at "
                                 f"{self.getpos()}")
        else:
            self.open.pop()


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1", "2"])
def test_the_page_is_well_formed_self_contained_and_has_its_pictures(
    trained: dict, version: str
) -> None:
    page = card_page(trained, version)
    assert page.lstrip().lower().startswith("<!doctype html>")
    checker = _TagBalance()
    checker.feed(page)
    checker.close()
    assert checker.problems == [] and checker.open == []
    # Nothing fetched: no script, no stylesheet link, no URL in a src or href, no url().
    assert "script" not in checker.seen and "link" not in checker.seen
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "url(" not in page and "@import" not in page
    svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
    # ROC, precision-recall, calibration and importance; the second version adds the
    # gate's interval chart.
    assert len(svgs) == (4 if version == "1" else 5)
    assert sum(svg.count('class="bar"') for svg in svgs) == len(
        card_summary(trained, version)["feature_importance"])
    assert any('class="point"' in svg for svg in svgs)


def card_of_v1(trained: dict, base: Schema, **changes: object) -> model_card.ModelCard:
    """v1's card made again from its registered model (trained with the schema `base`),
    with `changes` to its inputs."""
    from core import gate

    schema = base

    settings = settings_for(trained["home"])
    summary = card_summary(trained, "1")
    split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
    loaded = registry.load_version(registry.connect(settings), settings.model_name, "1",
                                   settings.model_cache_dir)
    inputs = dict(
        model_name=settings.model_name, version="1", run_id=summary["run_id"], schema=schema,
        pipeline=loaded.pipeline, threshold=loaded.threshold,
        refit_rows=split.train, holdout=split.holdout,
        holdout_predicted=loaded.predict_proba(model_frame(schema, split.holdout)),
        decision=gate.decide(metric=task_of(schema).gate_metric, candidate_version="1",
                             candidate_score=0.7, champion_version=None,
                             champion_score=None, margin=0.0),
        champion_holdout_predicted=None,
        data=model_card.TrainingData(base_path=str(settings.data_path), base_rows=10),
        training_seconds=1.0, trials=1)
    return model_card.build_card(model_card.CardInputs(**(inputs | changes)))


@pytest.mark.slow
def test_text_from_the_schema_and_data_is_escaped(trained: dict, schema: Schema) -> None:
    """A data path, a description or a limitation with markup shows as text and breaks
    nothing."""
    hostile = Schema(schema.name, schema.target, schema.features,
                     description='<script>alert("x")</script> & co',
                     limitations=("<i>never</i> on Mondays",))
    card = card_of_v1(trained, schema, schema=hostile,
                      data=model_card.TrainingData(base_path="/data/<b>x.csv", base_rows=10))
    page = model_card.render_html(card)
    assert "<script" not in page and "<b>x" not in page and "<i>never" not in page
    assert "&lt;script&gt;" in page and "&lt;b&gt;x.csv" in page
    assert "&lt;i&gt;never&lt;/i&gt; on Mondays" in page
    assert "/data/" not in page  # outside ONEBOX_HOME: the file's name only


@pytest.mark.slow
def test_the_card_says_how_the_threshold_was_chosen_and_it_is_so(trained: dict,
                                                                  schema: Schema) -> None:
    """The threshold is the grid's best F1 on the refit rows' out-of-fold probabilities
    after Platt scaling: recomputed here from the run's parameters, it is the version's."""
    from core.calibration import fit_platt
    from core.task import best_f1_threshold
    from orchestration.train import CROSS_FIT_FOLDS, cross_fit_predictions

    settings = settings_for(trained["home"])
    client = registry.connect(settings)
    loaded = registry.load_version(client, settings.model_name, "1", settings.model_cache_dir)
    params = {name.removeprefix("best."): _number(value) for name, value in
              client.get_run(trained["first"]["run_id"]).data.params.items()
              if name.startswith("best.")}
    split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
    refit = pd.concat([split.train, split.valid])
    y = refit[schema.target].to_numpy()
    out_of_fold = cross_fit_predictions(schema, params, settings.seed,
                                        model_frame(schema, refit), y)
    platt = fit_platt(y, out_of_fold)
    assert platt.slope == pytest.approx(loaded.calibration.slope)
    assert best_f1_threshold(y, platt.apply(out_of_fold)) == loaded.threshold
    assert card_summary(trained, "1")["threshold"] == loaded.threshold

    words = text_of(card_page(trained, "1"))
    assert (f"The decision threshold {loaded.threshold:.2f} is the one of 0.05, 0.06, …, 0.95 "
            "with the highest F1 (the harmonic mean of precision and recall) on the "
            f"out-of-fold probabilities of the {len(refit):,} refit rows (each scored by a "
            f"model fitted on the other {CROSS_FIT_FOLDS - 1} of {CROSS_FIT_FOLDS} folds), "
            "after the Platt scaling the version serves; of equal F1s the lowest threshold "
            "wins. The holdout took no part in it.") in words
    # A version without a threshold of its own says the default stands.
    words = text_of(model_card.render_html(card_of_v1(trained, schema, threshold=None)))
    assert "carries no threshold of its own: the default 0.50 stands" in words


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


@pytest.mark.slow
def test_a_binary_card_draws_the_roc_and_precision_recall_curves_with_their_areas(
        trained: dict, schema: Schema) -> None:
    summary = card_summary(trained, "1")
    loaded, split = version_and_split(trained, schema, "1")
    y = split.holdout[schema.target].to_numpy()
    proba = loaded.predict_proba(model_frame(schema, split.holdout))
    average_precision = average_precision_score(y, proba)
    assert summary["average_precision"] == pytest.approx(average_precision)
    page = card_page(trained, "1")
    svgs = {re.search(r"<title>(.*?)</title>", svg).group(1): svg
            for svg in re.findall(r"<svg\b.*?</svg>", page, re.S)}
    roc = svgs[f"ROC curve (AUC {summary['holdout_auc']:.4f})"]
    pr = svgs[f"Precision-recall (AP {average_precision:.4f})"]
    for svg, css in ((roc, "roc"), (pr, "pr")):
        points = re.search(rf'<polyline class="{css}"[^>]*points="([^"]+)"', svg).group(1)
        assert len(points.split()) >= 10
        assert svg.count('class="threshold-point"') == 1  # the threshold, marked
    words = text_of(page)
    assert f"the AUC {summary['holdout_auc']:.4f}" in words
    assert f"the average precision (AP) {average_precision:.4f}" in words
    assert f"holdout's positive rate, {y.mean():.1%}" in words


@pytest.mark.slow
def test_the_hyperparameters_are_the_runs_and_the_run_and_version_link_to_mlflow(
        trained: dict) -> None:
    settings = settings_for(trained["home"])
    client = registry.connect(settings)
    for version, result in (("1", trained["first"]), ("2", trained["second"])):
        run = client.get_run(result["run_id"])
        logged = {name.removeprefix("best."): value
                  for name, value in run.data.params.items() if name.startswith("best.")}
        assert len(logged) >= 5
        page = card_page(trained, version)
        table = re.search(r'<table id="hyperparameters">(.*?)</table>', page, re.S).group(1)
        shown = {html.unescape(re.sub(r"<[^>]+>", "", name)): html.unescape(value)
                 for name, value in re.findall(
                     r'<tr><td>(.*?)</td><td class="num">(.*?)</td>', table)}
        assert shown == logged
        hrefs = dict(re.findall(r'<a class="(mlflow-[a-z]+)" href="([^"]+)"', page))
        assert hrefs == {
            "mlflow-run": f"/mlflow/#/experiments/{run.info.experiment_id}/runs/"
                          f"{result['run_id']}",
            "mlflow-version": f"/mlflow/#/models/{settings.model_name}/versions/{version}"}
        summary = card_summary(trained, version)
        assert summary["run_url"] == hrefs["mlflow-run"]
        assert summary["hyperparameters"] == logged


@pytest.mark.slow
def test_the_card_states_the_schemas_intended_use_and_limitations(trained: dict,
                                                                   schema: Schema) -> None:
    assert schema.intended_use and schema.limitations  # the shipped churn schema's
    words = text_of(card_page(trained, "1"))
    assert "Intended use and limitations" in words
    for statement in (*schema.intended_use, *schema.limitations):
        assert statement in words
    assert "gender and age" in words  # the model uses both: what that means is said
    # A schema that declares neither: the card says so.
    bare = Schema(schema.name, schema.target, schema.features, schema.description)
    words = text_of(model_card.render_html(card_of_v1(trained, schema, schema=bare)))
    assert ("None were declared: the schema this version was trained with says nothing of "
            "what the model is for") in words
    assert "gender and age" not in words
    # One of the two declared: the other is said to be missing.
    half = Schema(schema.name, schema.target, schema.features, schema.description,
                  intended_use=("Only for the demo.",))
    words = text_of(model_card.render_html(card_of_v1(trained, schema, schema=half)))
    assert "Intended use Only for the demo." in words
    assert "Limitations None declared in the schema" in words


def test_a_regression_card_has_no_curves_of_a_classifier_and_says_what_is_missing(
        tmp_path: Path) -> None:
    """A number's card: predicted against actual and residuals, no ROC nor precision-
    recall curve, no threshold; a schema without intended use or limitations and a card
    without hyperparameters say so; its data path is relative to ONEBOX_HOME."""
    from sklearn.datasets import load_diabetes

    from core import gate
    from orchestration.model import build_pipeline
    from tests.factories import DIABETES_TARGET, diabetes_schema

    schema = Schema.from_dict(diabetes_schema())
    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": DIABETES_TARGET})
    fit, holdout = frame.iloc[:350], frame.iloc[350:]
    pipeline = build_pipeline(schema, {"n_estimators": 30, "max_depth": 3}, 0).fit(
        model_frame(schema, fit), fit[DIABETES_TARGET].to_numpy())
    predicted = pipeline.predict(model_frame(schema, holdout))
    metric = task_of(schema).gate_metric
    card = model_card.build_card(model_card.CardInputs(
        model_name="diabetes-progression", version="4", run_id="r" * 32, schema=schema,
        pipeline=pipeline, threshold=None, refit_rows=fit, holdout=holdout,
        holdout_predicted=predicted,
        decision=gate.decide(metric=metric, candidate_version="4",
                             candidate_score=metric.score(holdout[DIABETES_TARGET], predicted),
                             champion_version=None, champion_score=None, margin=0.0),
        champion_holdout_predicted=None,
        data=model_card.TrainingData(base_path=str(tmp_path / "data" / "diabetes.csv"),
                                     base_rows=len(frame), home=str(tmp_path)),
        training_seconds=1.0, trials=3, experiment_id="5"))
    page = model_card.render_html(card)
    words = text_of(page)
    assert "Predicted against actual on the holdout" in words
    assert "ROC" not in words and "recall" not in words and "average precision" not in words
    assert 'class="roc"' not in page and 'class="pr"' not in page
    assert "decision threshold" not in words
    assert len(re.findall(r"<svg\b", page)) == 2  # predicted against actual, importance
    assert "None were declared" in words
    assert "The hyperparameters were not recorded with this card." in words
    assert 'href="/mlflow/#/experiments/5/runs/' + "r" * 32 + '"' in page
    assert 'href="/mlflow/#/models/diabetes-progression/versions/4"' in page
    assert "data/diabetes.csv (under ONEBOX_HOME)" in words and str(tmp_path) not in page
    assert page.index('class="onebox-nav"') < page.index("<h1>")  # the header comes first


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1", "2"])
def test_no_path_of_the_training_machine_is_on_the_page(
        trained: dict, version: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    page = card_page(trained, version)
    for folder in {str(tmp_path_factory.getbasetemp()), str(trained["home"]),
                   str(Path(trained["home"]).resolve())}:
        assert folder not in page
    # No string that looks like an absolute path of a file outside the front door's paths.
    absolute = re.findall(r"""(?<![\w.:/])/(?:home|tmp|root|var|srv|Users|usr)/[^\s"'<]*""",
                          page)
    assert absolute == []


@pytest.mark.slow
def test_a_card_that_cannot_be_written_does_not_fail_the_train_flow(trained: dict,
                                                                    tmp_path: Path) -> None:
    blocked = tmp_path / "reports-is-a-file"
    blocked.write_text("not a folder")
    with mock.patch.dict(os.environ, {"REPORTS_DIR": str(blocked)}):
        result = run_train_flow(trained["home"], trials=1, promotion_margin=1.0)
    assert result["model_card"] is None
    settings = settings_for(trained["home"])
    client = registry.connect(settings)
    version = client.get_model_version(settings.model_name, result["version"])
    assert version.tags["gate.decision"] == "rejected"  # registered and gated all the same
    assert model_card.CARD_TAG not in version.tags  # no link to a page that is not there
    assert client.get_run(result["run_id"]).info.status == "FINISHED"


@pytest.mark.slow
def test_a_browser_shows_the_headline_figures(trained: dict) -> None:
    settings = settings_for(trained["home"])
    summary = card_summary(trained, "2")
    path = model_card.card_path(settings.reports_dir, settings.model_name, "2")
    low, high = summary["holdout_auc_ci"]
    with browser.open_browser() as chrome:
        chrome.set_window_size(1280, 800)  # type: ignore[attr-defined]
        chrome.get(path.as_uri())  # type: ignore[attr-defined]
        shown = browser.wait_for_text(chrome, f"{summary['holdout_auc']:.4f}")
        browser.save_screenshot(chrome, "model-card")
        svg_count = len(chrome.find_elements("css selector", "svg"))  # type: ignore[attr-defined]
        layout = chrome.execute_script(FITS_SCRIPT)  # type: ignore[attr-defined]
        header = chrome.execute_script(  # type: ignore[attr-defined]
            "const nav = document.body.firstElementChild;"
            "return [nav.className, [...nav.querySelectorAll('a')].map("
            "a => [a.getAttribute('href'), a.textContent])]")
        curves = chrome.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('svg')].filter(s => s.querySelector("
            "'polyline.roc, polyline.pr')).map(s => s.getBoundingClientRect().width)")
    assert f"{settings.model_name} v2" in shown
    assert f"[{low:.4f}, {high:.4f}]" in shown
    assert "rejected" in shown and f"{summary['champion_auc']:.4f}" in shown
    assert svg_count == 5
    assert len(curves) == 2 and all(width > 200 for width in curves)  # ROC and PR, shown
    # The project's header first, with its links.
    from core.page_header import PAGES

    assert header == ["onebox-nav", [[path_, label] for path_, label, _ in PAGES]]
    # At 1280 px nothing is wider than the window, nor any table or chart than its box.
    assert layout["client"] <= 1280 and layout["scroll"] <= layout["client"], layout
    assert layout["overflowing"] == [], layout


# What overflows at the window's width: the page itself, any table, chart, code or
# paragraph wider than its box or past the window's right edge, and any chart's text past
# the chart's edge.
FITS_SCRIPT = """
const root = document.documentElement;
const overflowing = [];
for (const el of document.querySelectorAll('table, svg, pre, code, p, li, h1, h2, h3, nav')) {
  const box = el.getBoundingClientRect();
  if (box.right > root.clientWidth + 0.5 || el.scrollWidth > el.clientWidth + 1 && el.clientWidth) {
    overflowing.push(el.tagName + ': ' + (el.textContent || '').slice(0, 60));
  }
}
// A chart's words inside its picture (rotated axis labels aside): a title cut at the
// chart's edge is a title not read.
for (const text of document.querySelectorAll('svg text:not([transform])')) {
  const view = text.ownerSVGElement.viewBox.baseVal, box = text.getBBox();
  if (box.x < -0.5 || box.x + box.width > view.width + 0.5) {
    overflowing.push('svg text: ' + text.textContent);
  }
}
return {scroll: root.scrollWidth, client: root.clientWidth, overflowing: overflowing};
"""
