"""The model card the train flow writes for every registered version: its figures, its
files, its links from MLflow, and the page as a browser shows it."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

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
    """The page's visible words, tags dropped and whitespace folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


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
    assert f"{settings.data_path}" in words and f"{BASE_ROWS:,}" in words
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


@pytest.mark.slow
def test_the_card_states_the_calibration_error_before_and_after_platt_scaling(
    trained: dict, schema: Schema,
) -> None:
    settings = settings_for(trained["home"])
    summary = card_summary(trained, "1")
    loaded = registry.load_version(registry.connect(settings), settings.model_name, "1",
                                   settings.model_cache_dir)
    split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
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
    # Calibration and importance; the second version adds the gate's interval chart.
    assert len(svgs) == (2 if version == "1" else 3)
    assert sum(svg.count('class="bar"') for svg in svgs) == len(
        card_summary(trained, version)["feature_importance"])
    assert any('class="point"' in svg for svg in svgs)


@pytest.mark.slow
def test_text_from_the_schema_and_data_is_escaped(trained: dict, schema: Schema,
                                                  tmp_path: Path) -> None:
    """A data path or a description with markup shows as text and breaks nothing."""
    settings = settings_for(trained["home"])
    summary = card_summary(trained, "1")
    split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
    loaded = registry.load_version(registry.connect(settings), settings.model_name, "1",
                                   settings.model_cache_dir)
    hostile = Schema(schema.name, schema.target, schema.features,
                     description='<script>alert("x")</script> & co')
    from core import gate

    card = model_card.build_card(model_card.CardInputs(
        model_name=settings.model_name, version="1", run_id=summary["run_id"], schema=hostile,
        pipeline=loaded.pipeline, threshold=loaded.threshold,
        refit_rows=split.train, holdout=split.holdout,
        holdout_predicted=loaded.predict_proba(model_frame(schema, split.holdout)),
        decision=gate.decide(metric=task_of(schema).gate_metric, candidate_version="1",
                             candidate_score=0.7, champion_version=None,
                             champion_score=None, margin=0.0),
        champion_holdout_predicted=None,
        data=model_card.TrainingData(base_path="/data/<b>x</b>.csv", base_rows=10),
        training_seconds=1.0, trials=1))
    page = model_card.render_html(card)
    assert "<script" not in page and "<b>x" not in page
    assert "&lt;script&gt;" in page and "/data/&lt;b&gt;x&lt;/b&gt;.csv" in page


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
        chrome.get(path.as_uri())  # type: ignore[attr-defined]
        shown = browser.wait_for_text(chrome, f"{summary['holdout_auc']:.4f}")
        browser.save_screenshot(chrome, "model-card")
        svg_count = len(chrome.find_elements("css selector", "svg"))  # type: ignore[attr-defined]
    assert f"{settings.model_name} v2" in shown
    assert f"[{low:.4f}, {high:.4f}]" in shown
    assert "rejected" in shown and f"{summary['champion_auc']:.4f}" in shown
    assert svg_count == 3
