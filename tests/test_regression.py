"""A number, through the loop as far as it is built: trained with the search, judged on the
holdout with intervals, registered, gated on its error against the champion's on the same
holdout, served by a real predictor (JSON, batches, CSV, explanations in the target's
unit, the OpenAPI document) on the fast path, and its real outcomes taken by /feedback
and logged beside the predictions.  The table is scikit-learn's diabetes progression (a
number from 25 to 346), the one the issue tried."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_diabetes

from core import registry
from core.registry import LoadedModel
from core.schema import Schema, model_frame
from core.settings import Settings
from core.store import PredictionStore
from operations import processes
from orchestration.train import (
    Split,
    ensure_experiment,
    fit_and_register,
    promote_through_gate,
    search_hyperparameters,
    split_data,
)
from reporting import model_card
from simulation.loader import load_dataset
from tests.conftest import home_env, set_up_store, settings_for
from tests.factories import (
    DIABETES_MODEL,
    DIABETES_TARGET,
    diabetes_env,
    write_diabetes_home,
)

pytestmark = pytest.mark.slow

MODEL_NAME, TARGET = DIABETES_MODEL, DIABETES_TARGET


def train_a_shuffled_candidate(settings: Settings, schema: Schema) -> dict:
    """The train flow's steps, the candidate learning from shuffled targets (so it is
    worse), judged on the same holdout as the champion."""
    client = registry.connect(settings)
    # The fluent log_model needs the process-wide URI, and MLflow's set_tracking_uri also
    # exports it as MLFLOW_TRACKING_URI: kept inside this block, or every later test on
    # this worker would read this home's registry instead of its own.
    with mock.patch.dict(os.environ):
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        mlflow.set_registry_uri(settings.mlflow_tracking_uri)
        return _train_a_shuffled_candidate(client, settings, schema)


def _train_a_shuffled_candidate(client: MlflowClient, settings: Settings,
                                schema: Schema) -> dict:
    experiment = ensure_experiment(client, settings)
    parent = client.create_run(experiment).info.run_id
    split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
    rng = np.random.default_rng(0)
    search_on = Split(
        train=split.train.assign(**{TARGET: rng.permutation(split.train[TARGET])}),
        valid=split.valid.assign(**{TARGET: rng.permutation(split.valid[TARGET])}),
        holdout=split.holdout)
    best = search_hyperparameters.fn(search_on, schema, 3, settings.seed, client, experiment,
                                     parent)
    candidate = fit_and_register.fn(search_on, schema, best, settings, parent)
    decision = promote_through_gate.fn(client, settings, split, schema, candidate, 1.0)
    client.set_terminated(parent, "FINISHED")
    return {"candidate": candidate, "decision": decision, "run_id": parent, "split": split}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("regression-home")
    write_diabetes_home(home)
    return home


def settings_of(home: Path) -> Settings:
    return Settings.from_env(env_of(home))


def env_of(home: Path) -> dict[str, str]:
    return diabetes_env(home)


@pytest.fixture(scope="module")
def first(home: Path) -> dict:
    """The real train flow (`make train`'s) on the regression table."""
    from orchestration.train import train

    with mock.patch.dict(os.environ, env_of(home)):
        return train(n_trials=3)


@pytest.fixture(scope="module")
def champion(home: Path, first: dict) -> LoadedModel:
    settings = settings_of(home)
    model = registry.load_champion(registry.connect(settings), settings)
    assert model is not None
    return model


def test_the_train_flow_judges_the_first_version_on_its_error_and_promotes_it(
        first: dict, home: Path, champion: LoadedModel) -> None:
    assert first["task"] == "regression" and first["promoted"] and first["version"] == "1"
    assert first["gate"]["metric"] == "rmse" and first["gate"]["reason"] == "no champion yet"
    assert first["threshold"] is None
    assert first["model_card"] is not None and Path(first["model_card"]).is_file()
    client = registry.connect(settings_of(home))
    run = client.get_run(first["run_id"]).data.metrics
    # RMSE, MAE and R² with 95% bootstrap intervals around them; the table's signal is
    # real but modest (published R² of about 0.4-0.5).
    for name in ("rmse", "mae", "r2"):
        assert run[f"holdout_{name}_low"] < run[f"holdout_{name}"] < run[f"holdout_{name}_high"]
    assert 0.2 < run["holdout_r2"] < 0.7 and 40 < run["holdout_rmse"] < 70
    assert run["holdout_mae"] < run["holdout_rmse"] == pytest.approx(first["holdout_rmse"])
    assert run["best_valid_rmse"] > 0 and "threshold" not in run
    # What travels with the version: the task, its figures, no threshold, its interval --
    # whose coverage on the holdout (rows it was not fitted on) is near its level: 89
    # rows, so within about three binomial standard errors of 0.9 (0.032 each).
    assert champion.task.name == "regression" and champion.threshold is None
    assert champion.holdout_metrics["rmse"] == pytest.approx(run["holdout_rmse"])
    assert champion.interval is not None and run["interval_level"] == 0.9
    assert 0.8 <= run["holdout_interval_coverage"] <= 1.0
    assert run["holdout_interval_width"] > 0 and run["interval_oof_width_constant"] > 0
    # ... and the models of its error (DLE), whose estimate of the holdout's error, made
    # without its labels, is near the real one.
    assert champion.loss_estimator is not None
    for name in ("rmse", "mae"):
        assert 0.7 < run[f"holdout_estimated_{name}"] / run[f"holdout_{name}"] < 1.4, run
    tags = client.get_model_version(MODEL_NAME, champion.version).tags
    assert tags["gate.metric"] == "rmse" and tags["gate.decision"] == "promoted"


@pytest.fixture(scope="module")
def second(home: Path, first: dict) -> dict:
    settings = settings_of(home)
    return train_a_shuffled_candidate(settings, Schema.load(settings.schema_path))


def test_a_worse_candidate_is_kept_out_by_its_error(home: Path, second: dict,
                                                    champion: LoadedModel) -> None:
    settings = settings_of(home)
    decision = second["decision"]
    assert not decision.promoted and decision.champion_version == champion.version
    assert decision.candidate_score > decision.champion_score  # a higher error
    # The champion's error was measured on the same holdout rows as the candidate's.
    same_rows = champion.predict(model_frame(champion.schema, second["split"].holdout))
    truth = second["split"].holdout[TARGET].to_numpy()
    assert decision.champion_score == pytest.approx(
        float(np.sqrt(((same_rows - truth) ** 2).mean())))
    assert "(lower is better)" in decision.reason
    current = registry.version_by_alias(registry.connect(settings), MODEL_NAME,
                                        registry.CHAMPION)
    assert str(current.version) == champion.version


# --- the model card ----------------------------------------------------------------------------


def words_of(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_the_card_shows_the_error_predicted_against_actual_and_residuals_by_segment(
        first: dict, home: Path, champion: LoadedModel) -> None:
    settings = settings_of(home)
    summary = json.loads(model_card.card_summary_path(settings.reports_dir, MODEL_NAME, "1")
                         .read_text(encoding="utf-8"))
    run = registry.connect(settings).get_run(first["run_id"]).data.metrics
    assert summary["task"] == "regression" and summary["gate_metric"] == "rmse"
    assert summary["threshold"] is None and summary["unit"] == "points"
    for name in ("rmse", "mae", "r2"):  # the card's figures and intervals are the run's
        assert summary[f"holdout_{name}"] == pytest.approx(run[f"holdout_{name}"])
        assert summary[f"holdout_{name}_ci"] == pytest.approx(
            [run[f"holdout_{name}_low"], run[f"holdout_{name}_high"]])
    low, high = summary["holdout_rmse_ci"]
    assert low < summary["holdout_rmse"] < high
    # The served interval on the holdout: the run's figures, and what the page says.
    interval = summary["interval"]
    assert interval["coverage"] == pytest.approx(run["holdout_interval_coverage"])
    assert interval["width"] == pytest.approx(run["holdout_interval_width"])

    # Residuals by segment, recomputed here from the registered model on the same split.
    split = split_data.fn(load_dataset(settings.data_path, champion.schema), champion.schema,
                          settings.seed)
    holdout = split.holdout.reset_index(drop=True)
    residual = champion.predict(model_frame(champion.schema, holdout)) - holdout[TARGET]
    segments = summary["residual_segments"]
    leaned_on = [f["feature"] for f in summary["feature_importance"][:3]]
    assert sorted({s["feature"] for s in segments}) == sorted(leaned_on)
    for feature in leaned_on:
        mine = [s for s in segments if s["feature"] == feature]
        assert sum(s["rows"] for s in mine) == len(holdout)
        quartiles = pd.qcut(holdout[feature], 4, duplicates="drop").astype(str)
        for s in mine:
            rows = residual[quartiles == s["segment"]]
            assert s["rows"] == len(rows)
            assert s["mean_residual"] == pytest.approx(float(rows.mean()))
            assert s["rmse"] == pytest.approx(float(np.sqrt((rows ** 2).mean())))

    page = Path(first["model_card"]).read_text(encoding="utf-8")
    words = words_of(page)
    assert f"RMSE {summary['holdout_rmse']:.4g}" in words
    assert f"[{low:.4g}, {high:.4g}]" in words
    assert "Predicted against actual on the holdout" in words
    assert page.count('class="point"') == len(holdout)  # fewer than 500: every row drawn
    assert "Mean |SHAP contribution| on the holdout (points)" in words
    assert f"By {leaned_on[0]}" in words and "decision threshold" not in words
    assert "no champion to compare against" in words
    assert (f"Each answer carries a 90% interval ({interval['method']}" in words
            and f"for {interval['coverage']:.1%} of the rows" in words)
    # The error DLE estimated on the holdout without its labels: the run's, on the page.
    estimated = summary["estimated_error"]
    assert estimated["rmse"] == pytest.approx(run["holdout_estimated_rmse"])
    assert (f"estimated an RMSE of {estimated['rmse']:,.4g} points (measured: "
            f"{summary['holdout_rmse']:,.4g})") in words


def test_the_rejected_candidates_card_weighs_its_error_against_the_champions(
        home: Path, second: dict, champion: LoadedModel) -> None:
    settings = settings_of(home)
    schema, split, decision = champion.schema, second["split"], second["decision"]
    candidate = second["candidate"]
    card = model_card.build_card(model_card.CardInputs(
        model_name=MODEL_NAME, version=candidate["version"], run_id=second["run_id"],
        schema=schema, pipeline=candidate["pipeline"], threshold=None,
        refit_rows=pd.concat([split.train, split.valid]), holdout=split.holdout,
        holdout_predicted=candidate["holdout_proba"], decision=decision,
        champion_holdout_predicted=champion.predict(model_frame(schema, split.holdout)),
        data=model_card.TrainingData(base_path=str(settings.data_path), base_rows=442),
        training_seconds=1.0, trials=3))
    summary = model_card.summary(card)
    assert summary["champion_rmse"] == pytest.approx(decision.champion_score)
    difference = summary["holdout_rmse"] - summary["champion_rmse"]
    low, high = summary["rmse_difference_ci"]
    # Shuffled targets: the candidate's error is higher, and the paired interval says so.
    assert 0 < low <= difference <= high
    words = words_of(model_card.render_html(card))
    assert "rejected" in words and "(RMSE: lower is better)" in words
    assert f"champion v1 RMSE {summary['champion_rmse']:.4g}" in words
    assert f"{difference:+.4g}" in words
    assert "difference required ≤ -1" in words  # an error must fall by the margin


# --- served ------------------------------------------------------------------------------------

class Served:
    def __init__(self, url: str, store_url: str):
        self.url, self.store_url = url, store_url

    def post(self, path: str, body: object = None, **kwargs: object) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return requests.post(self.url + path, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def served(home: Path, champion: LoadedModel,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("regression-predictor")
    port = processes.free_port()
    store_url = set_up_store(f"sqlite:///{tmp / 'predictions.db'}")
    env = home_env(home, MODEL_NAME=MODEL_NAME, PREDICTION_STORE_URL=store_url,
                   MODEL_CACHE_DIR=str(tmp / "model-cache"), SPOOL_DIR=str(tmp / "spool"))
    process = processes.start_predictor(port, env, tmp / "predictor.log")
    try:
        processes.wait_until_healthy(f"http://127.0.0.1:{port}/health", process, timeout=90)
        yield Served(f"http://127.0.0.1:{port}", store_url)
    finally:
        processes.stop(process)


@pytest.fixture(scope="module")
def rows(champion: LoadedModel) -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame.head(40)


def as_records(frame: pd.DataFrame, schema: Schema) -> list[dict]:
    return [{name: float(row[name]) for name in schema.feature_names}
            for _, row in frame.iterrows()]


def test_answers_are_the_models_number_on_every_door(
        served: Served, champion: LoadedModel, rows: pd.DataFrame) -> None:
    records = as_records(rows, champion.schema)
    expected = champion.predict(model_frame(champion.schema, records))
    model = requests.get(served.url + "/model", timeout=5).json()
    assert model["task"] == "regression" and model["fast_path"] is True
    assert model["threshold"] is None

    single = served.post("/predict", records[0])
    assert single.status_code == 200, single.text
    answer = single.json()
    assert set(answer) == {"prediction_id", TARGET, "interval", "model"}
    assert answer[TARGET] == pytest.approx(expected[0], rel=1e-5)
    # The version's conformal interval around the number, at the trained level.
    low, high = champion.interval.bounds(expected)
    assert answer["interval"] == pytest.approx({"low": low[0], "high": high[0], "level": 0.9},
                                               rel=1e-5)
    assert answer["interval"]["low"] < answer[TARGET] < answer["interval"]["high"]
    batch = served.post("/predict", records).json()["predictions"]
    assert [set(a) for a in batch] == [{"prediction_id", TARGET, "interval"}] * len(records)
    np.testing.assert_allclose([a[TARGET] for a in batch], expected, rtol=1e-5)
    np.testing.assert_allclose([a["interval"]["high"] for a in batch], high, rtol=1e-5)

    sheet = pd.DataFrame(records).assign(patient=[f"p{i}" for i in range(len(records))])
    scored = served.post("/predict", data=sheet.to_csv(index=False),
                         headers={"Content-Type": "text/csv"})
    assert scored.status_code == 200, scored.text
    back = list(csv.DictReader(io.StringIO(scored.text)))
    assert list(back[0])[-4:] == ["prediction_id", f"{TARGET}_predicted", f"{TARGET}_low",
                                  f"{TARGET}_high"]
    assert [r["patient"] for r in back] == sheet["patient"].tolist()
    np.testing.assert_allclose([float(r[f"{TARGET}_predicted"]) for r in back], expected,
                               rtol=1e-5)
    np.testing.assert_allclose([float(r[f"{TARGET}_low"]) for r in back], low, rtol=1e-5)

    explained = served.post("/predict?explain=true", records[:3]).json()["predictions"]
    for row, number in zip(explained, expected[:3], strict=True):
        parts = row["explanation"]
        assert parts["unit"] == "points"
        assert parts["base"] + sum(parts["contributions"].values()) == pytest.approx(
            number, rel=1e-4)


def test_feedback_takes_a_number_in_the_declared_range(served: Served,
                                                       champion: LoadedModel,
                                                       rows: pd.DataFrame) -> None:
    record = as_records(rows.head(1), champion.schema)[0]
    prediction_id = served.post("/predict", record).json()["prediction_id"]
    for wrong, problem in ((512.0, "outside the target's range from 0 to 400 points"),
                           (True, "must be a number from 0 to 400 points"),
                           ("151", "must be a number")):
        refused = served.post("/feedback", {"prediction_id": prediction_id, TARGET: wrong})
        assert refused.status_code == 422, refused.text
        assert any(p["field"] == TARGET and problem in p["problem"]
                   for p in refused.json()["problems"]), refused.text
    churn_shaped = served.post("/feedback", {"prediction_id": prediction_id, "churn": 1})
    assert churn_shaped.status_code == 422
    assert {p["field"] for p in churn_shaped.json()["problems"]} == {TARGET, "churn"}

    accepted = served.post("/feedback", {"prediction_id": prediction_id, TARGET: 151.5})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"prediction_id": prediction_id, TARGET: 151.5,
                               "status": "recorded"}
    assert served.post("/feedback", {"prediction_id": prediction_id,
                                     TARGET: 151.5}).json()["status"] == "unchanged"
    assert served.post("/feedback", {"prediction_id": prediction_id,
                                     TARGET: 90}).status_code == 409

    store = PredictionStore(served.store_url)
    try:
        logged = store.labelled(10)
    finally:
        store.dispose()
    row = logged.set_index("prediction_id").loc[prediction_id]
    assert row["actual"] == 151.5
    predicted = champion.predict(model_frame(champion.schema, [record]))
    assert row["value"] == pytest.approx(predicted[0], rel=1e-5)
    assert pd.isna(row["probability"]) and pd.isna(row["decision"])
    # The interval it was answered with, logged beside the number.
    low, high = champion.interval.bounds(predicted)
    assert (row["interval_low"], row["interval_high"]) == pytest.approx((low[0], high[0]),
                                                                        rel=1e-5)


def test_the_openapi_document_describes_the_number(served: Served) -> None:
    document = requests.get(served.url + "/openapi.json", timeout=5).json()
    schemas = document["components"]["schemas"]
    assert schemas["Prediction"]["properties"][TARGET]["type"] == "number"
    # The interval is described, not required: a version trained before intervals has none.
    assert set(schemas["Prediction"]["required"]) == {"prediction_id", TARGET}
    interval = schemas["Prediction"]["properties"]["interval"]
    assert set(interval["required"]) == {"low", "high", "level"}
    feedback = schemas["Feedback"]["properties"][TARGET]
    assert (feedback["type"], feedback["minimum"], feedback["maximum"]) == ("number", 0, 400)
    assert schemas["Explanation"]["properties"]["unit"]["enum"] == ["points"]
    info = schemas["ModelInfo"]["properties"]
    assert info["task"]["enum"] == ["regression"] and info["threshold"]["nullable"] is True


def test_generated_requests_get_documented_answers_and_never_a_5xx(served: Served) -> None:
    """schemathesis, from the regression predictor's own document: valid and invalid
    records, batches, CSV and feedback numbers; every answer documented, none a 5xx."""
    from collections import Counter

    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    api = schemathesis.openapi.from_url(served.url + "/openapi.json",
                                        config=schemathesis.Config.from_dict({
                                            "generation": {"mode": "all"}}))
    answered: Counter[tuple[str, int]] = Counter()
    for result in api.get_all_operations():
        operation = result.ok()
        if operation.label not in ("POST /predict", "POST /feedback"):
            continue

        @settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: object) -> None:
            excluded = [positive_data_acceptance] if case.media_type == "text/csv" else []
            response = case.call_and_validate(base_url=served.url, excluded_checks=excluded)
            answered[(case.operation.label, response.status_code // 100)] += 1

        call()
    assert answered[("POST /predict", 2)] and answered[("POST /predict", 4)], answered
    assert answered[("POST /feedback", 4)], answered
    assert not any(status >= 5 for _, status in answered), answered


# --- watched -----------------------------------------------------------------------------------

def send_with_outcomes(served: Served, frame: pd.DataFrame, schema: Schema,
                       outcomes: np.ndarray) -> np.ndarray:
    """Score `frame` in one batch and send each row's outcome; the served numbers."""
    answers = served.post("/predict", as_records(frame, schema)).json()["predictions"]
    for answer, outcome in zip(answers, outcomes, strict=True):
        sent = served.post("/feedback", {"prediction_id": answer["prediction_id"],
                                         TARGET: float(outcome)})
        assert sent.status_code == 200, sent.text
    return np.array([a[TARGET] for a in answers])


def test_the_exporter_holds_the_live_error_to_the_holdouts(
        served: Served, home: Path, champion: LoadedModel,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The drift exporter on a regression champion: drift of every feature and of the
    predicted number, the live RMSE and MAE of the labelled rows beside the holdout's,
    their estimate before the labels (DLE), and the alarm when the live error passes its
    limit (QUALITY_MAX_ERROR_RATIO times the holdout's, or more where its sampling error
    allows more) on QUALITY_MIN_LABELS labels."""
    from prometheus_client import CollectorRegistry, generate_latest

    from monitoring.exporter import DriftExporter, SnapshotCollector

    table = load_diabetes(as_frame=True).frame.rename(columns={"target": TARGET})
    schema = champion.schema
    settings = Settings.from_env(home_env(
        home, MODEL_NAME=MODEL_NAME, PREDICTION_STORE_URL=served.store_url,
        MODEL_CACHE_DIR=str(tmp_path_factory.mktemp("exporter-cache")),
        QUALITY_MIN_LABELS="200", QUALITY_MAX_ERROR_RATIO="1.25"))

    def scrape() -> dict[str, float]:
        exporter = DriftExporter(settings, window_rows=2000, interval_seconds=60)
        exporter.compute_once()
        assert exporter.snapshot.last_error is None, exporter.snapshot.last_error
        metrics = CollectorRegistry()
        metrics.register(SnapshotCollector(exporter.snapshot, exporter.policy, 0.05))
        lines = generate_latest(metrics).decode().splitlines()
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines
                if line.startswith("onebox_") and "{" not in line.split(" ")[0]}

    truth = table[TARGET].to_numpy()[:250]
    served_numbers = send_with_outcomes(served, table.head(250), schema, truth)
    figures = scrape()
    store = PredictionStore(served.store_url)
    try:
        labelled = store.labelled(5000)
    finally:
        store.dispose()
    errors = labelled["value"].astype(float) - labelled["actual"].astype(float)
    assert figures["onebox_live_labels"] == len(labelled) >= 250
    assert figures["onebox_live_rmse"] == pytest.approx(float(np.sqrt((errors ** 2).mean())))
    assert figures["onebox_live_mae"] == pytest.approx(float(errors.abs().mean()))
    assert figures["onebox_reference_rmse"] == pytest.approx(champion.holdout_metrics["rmse"])
    # How often the answered intervals held the real number, beside their level.
    actual = labelled["actual"].astype(float)
    inside = labelled["interval_low"].le(actual) & labelled["interval_high"].ge(actual)
    assert figures["onebox_live_interval_coverage"] == pytest.approx(float(inside.mean()))
    assert figures["onebox_interval_level"] == 0.9
    clean_coverage = figures["onebox_live_interval_coverage"]
    assert "onebox_live_auc" not in figures and "onebox_estimated_auc" not in figures
    # The error estimated from the window's features and numbers alone: the holdout's kind.
    clean_estimate = figures["onebox_estimated_rmse"]
    assert 0.6 < clean_estimate / figures["onebox_reference_rmse"] < 1.5, figures
    assert 0.6 < figures["onebox_estimated_mae"] / figures["onebox_reference_mae"] < 1.5
    # ... of the whole window, labelled or not: no label is needed.
    store = PredictionStore(served.store_url)
    try:
        window_rows = len(store.recent(2000, model_version=champion.version,
                                       model_name=MODEL_NAME))
    finally:
        store.dispose()
    assert figures["onebox_estimated_rows"] == window_rows
    assert "onebox_prediction_drift_score" in figures  # the number's drift is tested
    assert figures["onebox_live_quality_degraded"] == 0.0  # rows it trained on: no shortfall
    # The live error's limits: at least the ratio's, more where chance allows more.
    for name in ("rmse", "mae"):
        assert (figures[f"onebox_live_{name}_limit"]
                >= 1.25 * figures[f"onebox_reference_{name}"] * (1 - 1e-9))
    assert np.abs(served_numbers - truth).mean() < 2 * champion.holdout_metrics["mae"]

    # The outcomes move 150 points away from what the model says (clipped to the range).
    drifted = np.clip(table[TARGET].to_numpy()[250:] + 150, 0, 400)
    send_with_outcomes(served, table.iloc[250:], schema, drifted)
    figures = scrape()
    assert figures["onebox_live_rmse"] > figures["onebox_live_rmse_limit"]
    # 150 points off: most of the new rows outside their interval (the window also holds
    # the clean rows above, and other tests' labelled rows).
    assert figures["onebox_live_interval_coverage"] < clean_coverage - 0.2
    assert figures["onebox_live_quality_degraded"] == 1.0
    assert figures["onebox_drift_detected"] == 1.0
    # A concept change (the same inputs, other outcomes) is what the estimate cannot see,
    # as its documentation says: it stays where it was while the live error doubles.
    assert figures["onebox_estimated_rmse"] == pytest.approx(clean_estimate, rel=0.25)
    assert figures["onebox_estimated_rmse"] < 1.25 * figures["onebox_reference_rmse"]

    # The drift-check flow reads the same window and decides alike: it would start the
    # train deployment, and says why (the train flow itself trains a number: above).
    from monitoring.drift import DriftPolicy
    from orchestration.drift_check import measure_window

    with mock.patch.dict(os.environ, {**env_of(home), "PREDICTION_STORE_URL": served.store_url,
                                      "MODEL_CACHE_DIR": str(settings.model_cache_dir)}):
        measured = measure_window.fn(2000, DriftPolicy.from_settings(settings))
    assert measured["drift_detected"] and "live RMSE" in measured["reason"]


def test_the_report_shows_the_windows_drift_and_its_error_as_logged(
        served: Served, champion: LoadedModel, tmp_path: Path) -> None:
    """A drift report of the regression window (every feature and the predicted number)
    with its quality page: Evidently's regression preset on the logged numbers and their
    outcomes, whose RMSE, MAE and R² are those of the log."""
    from reporting.report import window_from_log, write_report

    table = load_diabetes(as_frame=True).frame.rename(columns={"target": TARGET})
    send_with_outcomes(served, table.tail(60), champion.schema, table[TARGET].tail(60))
    store = PredictionStore(served.store_url)
    try:
        logged = store.recent(2000, model_version=champion.version)
    finally:
        store.dispose()
    labelled = logged[logged["actual"].notna()]
    assert len(labelled) >= 60
    files = write_report(window_from_log(logged, champion), champion, tmp_path)
    summary = files.summary_data
    assert summary["model_version"] == champion.version
    assert summary["prediction_drift"]["score"] is not None  # the number's drift is tested
    assert set(summary["features"]) == set(champion.schema.feature_names)
    errors = labelled["value"].astype(float) - labelled["actual"].astype(float)
    assert summary["quality"]["labels"] == len(labelled)
    assert summary["quality"]["rmse"] == pytest.approx(float(np.sqrt((errors ** 2).mean())))
    assert summary["quality"]["auc"] is None and summary["estimated"]["auc"] is None
    assert files.quality_html is not None and files.quality_html.exists()
    page = files.quality_html.read_text(encoding="utf-8")
    assert "Mean Absolute" in page  # the regression preset's, not the classification one's

    from reporting.report import _regression_snapshot

    shown = {m["metric_name"].split("(")[0]: m["value"] for m in _regression_snapshot(
        labelled.rename(columns={"value": "prediction"}), champion).dict()["metrics"]}
    assert shown["RMSE"] == pytest.approx(summary["quality"]["rmse"])
    assert shown["MAE"]["mean"] == pytest.approx(float(errors.abs().mean()))
    truth = labelled["actual"].astype(float)
    r2 = 1 - float((errors ** 2).sum()) / float(((truth - truth.mean()) ** 2).sum())
    assert shown["R2Score"] == pytest.approx(r2)
    assert files.index.exists() and files.html.exists()
    # The index charts and lists the live error, held to the holdout's times the ratio.
    index = files.index.read_text(encoding="utf-8")
    assert "Live RMSE" in index and "live RMSE" in index and "Live AUC" not in index
    assert f"{summary['quality']['rmse']:.4g}" in index
    # The live line is the window's own limit (the ratio's, or the sampling error's when
    # larger); the estimate's is the holdout's times the ratio.
    ratio_limit = champion.holdout_metrics["rmse"] * summary["quality_max_error_ratio"]
    limit = summary["live_limits"]["rmse"]
    assert limit >= ratio_limit
    assert f"alarm &gt; {limit:.4g}" in index or f"alarm > {limit:.4g}" in index
    assert (f"alert &gt; {ratio_limit:.4g}" in index
            or f"alert > {ratio_limit:.4g}" in index)
    assert "regression quality" in index
    # ... and the error estimated before the labels (DLE), beside it.
    assert summary["quality"]["estimated_rmse"] == pytest.approx(summary["estimated"]["rmse"])
    assert summary["estimated"]["rmse"] > 0 and summary["estimated"]["mae"] > 0
    assert "Estimated RMSE" in index and "estimated RMSE" in index


def test_one_registered_model_per_business(home: Path, champion: LoadedModel,
                                           trained_home: Path, schema: Schema) -> None:
    """The churn schema cannot train into the regression business's registered model,
    and a rollback never moves @champion to a version of another business."""
    from operations.rollback import rollback
    from orchestration.train import check_business

    settings = settings_of(home)
    client = registry.connect(settings)
    with pytest.raises(registry.OtherBusiness,
                       match=r"holds regression 'progression' models .* this schema "
                             r"\(credit_card_churn\) predicts binary 'churn'"):
        check_business.fn(client, settings, schema)
    check_business.fn(client, settings, champion.schema)  # its own schema passes

    # A churn version registered under this business's name by mistake, as @previous.
    churn = registry.load_champion(registry.connect(settings_for(trained_home)),
                                   settings_for(trained_home))
    stray = client.create_model_version(
        MODEL_NAME, source=str(churn.path),
        tags={registry.BUSINESS_TAG: registry.business_of(churn.schema)})
    client.set_registered_model_alias(MODEL_NAME, registry.PREVIOUS, stray.version)
    tags = client.get_model_version(MODEL_NAME, champion.version).tags
    assert tags[registry.BUSINESS_TAG] == "regression 'progression'"  # the flow's tag
    try:
        with pytest.raises(SystemExit, match=f"not rolled back: @champion v1 predicts "
                                             f"regression 'progression', @previous "
                                             f"v{stray.version} binary"):
            rollback(settings)
        now = registry.version_by_alias(client, MODEL_NAME, registry.CHAMPION)
        assert str(now.version) == champion.version
    finally:
        client.delete_registered_model_alias(MODEL_NAME, registry.PREVIOUS)


def test_a_version_registered_before_the_business_tag_is_loaded_to_read_its_business(
        home: Path, champion: LoadedModel, trained_home: Path, schema: Schema) -> None:
    """Versions from before onebox.business carry no tag: the train flow's check loads
    the champion to read its schema instead of letting another business in."""
    from orchestration.train import check_business

    settings = Settings.from_env({**env_of(home), "MODEL_NAME": "churn-before-the-tag"})
    client = registry.connect(settings)
    churn = registry.load_champion(registry.connect(settings_for(trained_home)),
                                   settings_for(trained_home))
    client.create_registered_model(settings.model_name)
    old = client.create_model_version(settings.model_name, source=str(churn.path))
    client.set_registered_model_alias(settings.model_name, registry.CHAMPION, old.version)
    assert registry.BUSINESS_TAG not in client.get_model_version(
        settings.model_name, old.version).tags
    with pytest.raises(registry.OtherBusiness,
                       match=r"holds binary 'churn' models .* predicts regression"):
        check_business.fn(client, settings, champion.schema)
    check_business.fn(client, settings, schema)  # churn may go on training there


def test_a_version_from_before_the_error_models_is_assessed_without_an_estimate(
        champion: LoadedModel, tmp_path: Path) -> None:
    """A number's version trained before DLE carries no loss_*.json: its window gets no
    estimate and no estimated shortfall (live quality and drift as before), never an error."""
    import shutil

    from core.loss_estimation import FILES
    from monitoring.drift import DriftPolicy
    from monitoring.window import assess

    older = tmp_path / "older"
    shutil.copytree(champion.path, older)
    for name in FILES:
        (older / "extra_files" / name).unlink()
    loaded = registry.load_local(older, name=MODEL_NAME, version=champion.version)
    assert loaded.loss_estimator is None
    table = load_diabetes(as_frame=True).frame.rename(columns={"target": TARGET}).head(200)
    window = table.assign(value=champion.predict(model_frame(champion.schema, table)))
    assessment = assess(loaded, window, DriftPolicy(), 0.05)
    assert assessment.estimated.figures() == {} and assessment.estimated.rows == 0
    assert assessment.estimated_shortfall is None and assessment.drift is not None
    # The same window with the error models: an estimate, of every row.
    estimated = assess(champion, window, DriftPolicy(), 0.05).estimated
    assert estimated.rows == 200 and estimated.rmse > 0 and estimated.mae > 0


def test_a_person_tries_the_regression_model_in_a_browser(served: Served,
                                                         champion: LoadedModel) -> None:
    """The try-it page speaks the served task: the number in its unit, no threshold, the
    reasons in the unit, the CSV columns a file gets back."""
    from tests import browser

    model = requests.get(served.url + "/model", timeout=5).json()
    answer = served.post("/predict", model["typical_record"]).json()
    expected, interval = answer[TARGET], answer["interval"]
    with browser.open_browser() as chrome:
        chrome.get(served.url + "/")
        line = browser.wait_for_text(chrome, f"{MODEL_NAME} v{champion.version}")
        assert "predicts progression in points" in line and "threshold" not in line
        assert "progression_predicted and progression_low and progression_high" in (
            chrome.find_element("id", "csv-columns").text)
        chrome.find_element("id", "predict").click()
        text = browser.wait_for_text(chrome, "predicted progression")
        shown = chrome.find_element("id", "probability").text
        assert shown.endswith(" points")
        assert float(shown.split(" ")[0].replace(",", "")) == pytest.approx(expected, rel=1e-3)
        # The interval in words, its bounds as the answer gave them.
        said = chrome.find_element("id", "decision").text
        low, high = (float(n.replace(",", "")) for n in re.findall(
            r"between ([\d,.]+) and ([\d,.]+) points 90 times in 100", said)[0])
        assert (low, high) == pytest.approx((interval["low"], interval["high"]), rel=1e-3)
        bars = chrome.find_elements("css selector", "#explanation .bar[data-feature]")
        assert sorted(b.get_attribute("data-feature") for b in bars) == sorted(
            champion.schema.feature_names)
        assert "score (points)" in text and "in points" in chrome.find_element(
            "id", "explanation-note").text
        browser.save_screenshot(chrome, "try-page-regression")
