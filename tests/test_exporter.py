"""The drift exporter as a real process: metrics for a drifted window, a capped window,
live quality once labels arrive, the alarm, and a reference that follows the champion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core import registry
from core.schema import Schema, model_frame
from core.store import PredictionRecord, PredictionStore
from monitoring.window import estimate_from_served
from operations import processes
from simulation.generator import SCENARIOS, generate
from simulation.traffic import records_from_frame
from tests.conftest import home_env, run_train_flow, settings_for
from tests.factories import write_training_csv

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parent.parent


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == lv for k, lv in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def log_scored(store_url: str, model: registry.LoadedModel, frame: pd.DataFrame,
               start: datetime, *, label_every: int | None = None) -> None:
    """Log `frame` as `model`'s predictions, one millisecond apart from `start`; every
    `label_every`-th one gets its real outcome."""
    schema = model.schema
    store = PredictionStore(store_url)
    try:
        store.migrate()
        probs = model.predict_proba(model_frame(schema, frame))
        records = [PredictionRecord(str(uuid.uuid4()), model.name, model.version, rec,
                                    float(p), int(p >= model.threshold),
                                    start + timedelta(milliseconds=j))
                   for j, (rec, p) in enumerate(zip(records_from_frame(frame, schema), probs,
                                                    strict=True))]
        store.log(records)
        if label_every:
            for record, actual in list(zip(records, frame[schema.target], strict=True))[
                    ::label_every]:
                store.record_feedback(record.prediction_id, int(actual))
    finally:
        store.dispose()


@contextmanager
def running_exporter(home: Path, store_url: str, tmp_path: Path,
                     window_rows: int) -> Iterator[str]:
    """A real exporter process recomputing every second; yields its base URL."""
    port = processes.free_port()
    env = home_env(home, PREDICTION_STORE_URL=store_url, MODEL_CACHE_DIR=str(tmp_path / "cache"))
    with open(tmp_path / "exporter.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitoring.exporter", "--bind", f"127.0.0.1:{port}",
             "--window-rows", str(window_rows), "--interval", "1"],
            env={**os.environ, **env}, cwd=REPO_ROOT, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop(process)


def computed(url: str, *, model_version: str, timeout: float = 120) -> dict:
    """Wait for a computation on `model_version`; its /health."""
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        try:
            health = requests.get(url + "/health", timeout=2).json()
            if health["model_version"] == model_version and health["computed_at"]:
                return health
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no computation on v{model_version} in {timeout}s: {health}")


def scrape_until(url: str, ready: Callable[[dict], bool], timeout: float = 120) -> dict:
    """Scrape /metrics until `ready` says the samples are the awaited ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(url + "/metrics")
        if ready(samples):
            return samples
        time.sleep(0.5)
    raise AssertionError(f"metrics not ready in {timeout}s: {samples}")


def test_exporter_serves_drift_quality_and_a_capped_window(
    trained_home: Path, tmp_path: Path, schema: Schema, champion: registry.LoadedModel
) -> None:
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    # 3,000 older clean rows, then 1,500 newer ones with an economic shift, half labelled.
    start = datetime.now(UTC) - timedelta(hours=1)
    log_scored(store_url, champion, generate(3000, 61, schema=schema), start)
    log_scored(store_url, champion, generate(1500, 62, SCENARIOS["economic_shift"], schema),
               start + timedelta(seconds=3), label_every=2)

    with running_exporter(trained_home, store_url, tmp_path, window_rows=1500) as url:
        health = computed(url, model_version="1")
        samples = scrape(url + "/metrics")

    assert value(samples, "onebox_drift_window_rows", model_version="1") == 1500  # the cap
    assert health["window_rows"] == 1500
    newest = start + timedelta(seconds=3, milliseconds=1499)
    assert datetime.fromisoformat(health["newest_prediction_at"]) == newest
    assert value(samples, "onebox_drift_window_newest_timestamp_seconds") == pytest.approx(
        newest.timestamp(), abs=1e-3)
    # Quality estimated from the window's served probabilities alone, held to the gate's AUC.
    window = PredictionStore(store_url).recent(1500)
    expected = estimate_from_served(champion, window["probability"].to_numpy(float))
    assert value(samples, "onebox_estimated_rows") == 1500
    assert value(samples, "onebox_estimated_auc") == pytest.approx(expected.auc, abs=1e-9)
    assert value(samples, "onebox_estimated_precision") == pytest.approx(expected.precision,
                                                                         abs=1e-9)
    assert value(samples, "onebox_estimated_recall") == pytest.approx(expected.recall, abs=1e-9)
    assert value(samples, "onebox_reference_auc") == pytest.approx(champion.holdout_auc)
    assert value(samples, "onebox_estimated_auc_margin") == pytest.approx(0.05)
    # The reference's predictions are out of sample: the prediction's drift is counted.
    assert champion.reference_out_of_sample
    assert value(samples, "onebox_prediction_drifted") in (0.0, 1.0)
    for feature in ("customer_age", "credit_limit", "total_revolving_bal"):
        assert value(samples, "onebox_feature_drifted", feature=feature) == 1.0
    for feature in ("gender", "dependent_count", "card_category", "marital_status"):
        assert value(samples, "onebox_feature_drifted", feature=feature) == 0.0
    assert value(samples, "onebox_drift_share") == pytest.approx(3 / 11)
    # Limits moved away from what income and card predict: a drifted relation too.
    assert value(samples, "onebox_feature_conditional_drift_score",
                 feature="credit_limit") < value(samples, "onebox_drift_pvalue_threshold")
    assert value(samples, "onebox_feature_conditional_drifted", feature="credit_limit") == 1.0
    # The alarm the Prometheus rule fires on, and the thresholds behind it.
    assert value(samples, "onebox_drift_detected") == 1.0
    assert value(samples, "onebox_data_drift_detected") == 1.0
    assert value(samples, "onebox_drift_share_threshold") == pytest.approx(1 / 11)
    assert value(samples, "onebox_drift_false_alarm_rate") == pytest.approx(0.005)
    threshold = value(samples, "onebox_drift_pvalue_threshold")
    # 11 features, the relations, the joint test and the prediction (its reference is out
    # of fold, so it counts) share the false-alarm budget.
    relations = {dict(labels)["feature"] for name, labels in samples
                 if name == "onebox_feature_conditional_drift_score"}
    # Tied by construction in the generator: limits to income and card, tenure to age.
    assert {"credit_limit", "customer_age", "months_on_book"} <= relations
    assert "total_revolving_bal" not in relations  # nothing explains it
    assert threshold == pytest.approx(0.005 / (11 + len(relations) + 2))
    # The classifier two-sample test of all the features together.
    assert 0.5 < value(samples, "onebox_joint_drift_auc") <= 1.0
    assert value(samples, "onebox_joint_drifted") in (0.0, 1.0)
    assert 0.0 <= value(samples, "onebox_joint_drift_score") <= 1.0
    assert value(samples, "onebox_feature_drift_score", feature="credit_limit") < threshold
    assert value(samples, "onebox_feature_drift_score", feature="gender") > threshold
    assert value(samples, "onebox_live_labels") == 750
    assert value(samples, "onebox_live_quality_degraded") == 0.0  # the relation still holds
    assert 0.5 < value(samples, "onebox_live_auc") <= 1.0
    assert 0 <= value(samples, "onebox_live_precision") <= 1
    assert value(samples, "onebox_drift_computation_seconds") > 0
    assert value(samples, "onebox_drift_last_computed_timestamp_seconds") > start.timestamp()
    assert value(samples, "onebox_drift_errors_total") == 0


def test_exporter_follows_the_champion_and_its_reference(
    tmp_path: Path, schema: Schema
) -> None:
    """When @champion moves, the next computation compares with the new version's reference."""
    home = tmp_path / "home"
    write_training_csv(settings_for(home).data_path, schema, rows=3000)
    assert run_train_flow(home, trials=2)["version"] == "1"
    settings = settings_for(home)
    client = registry.connect(settings)
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    older = generate(600, 71, SCENARIOS["older_customers"], schema)
    start = datetime.now(UTC) - timedelta(hours=1)
    v1 = registry.load_champion(client, settings)
    log_scored(store_url, v1, older, start)

    with running_exporter(home, store_url, tmp_path, window_rows=600) as url:
        computed(url, model_version="1")
        against_v1 = scrape(url + "/metrics")

        # v2 learns from older customers: promoted whatever its score (margin -1).
        older_training = tmp_path / "older.csv"
        generate(3000, 72, SCENARIOS["older_customers"], schema).to_csv(older_training,
                                                                         index=False)
        trained = run_train_flow(home, trials=2, data_path=str(older_training),
                                 promotion_margin=-1.0)
        assert trained["promoted"] and trained["version"] == "2"
        v2 = registry.load_champion(client, settings)
        log_scored(store_url, v2, older, start + timedelta(seconds=1))
        # The exporter may see v2 before its predictions are logged: wait for a window of them.
        against_v2 = scrape_until(url, lambda samples: any(
            n == "onebox_drift_window_rows" and dict(ls).get("model_version") == "2" and v
            for (n, ls), v in samples.items()))

    assert v2.reference()["customer_age"].mean() > v1.reference()["customer_age"].mean() + 4
    # Older customers are drift for v1, whose reference is the old population ...
    assert value(against_v1, "onebox_drift_window_rows", model_version="1") == 600
    assert value(against_v1, "onebox_feature_drifted", feature="customer_age") == 1.0
    assert value(against_v1, "onebox_drift_detected") == 1.0
    # ... and the population v2 was trained on: no drift against its reference.
    assert value(against_v2, "onebox_drift_window_rows", model_version="2") == 600
    assert value(against_v2, "onebox_feature_drifted", feature="customer_age") == 0.0
    assert value(against_v2, "onebox_drift_detected") == 0.0


def test_the_drift_check_flow_decides_on_the_window_the_exporter_shows(
    trained_home: Path, tmp_path: Path, schema: Schema, champion: registry.LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same rows (the champion's newest DRIFT_WINDOW_ROWS, not another version's), same
    figures, same decision: the flow cannot retrain on what the dashboard calls fine."""
    from monitoring.drift import DriftPolicy
    from orchestration.drift_check import measure_window

    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    start = datetime.now(UTC) - timedelta(hours=1)
    log_scored(store_url, champion, generate(800, 71, schema=schema), start, label_every=3)
    # Newer rows another version served: neither the exporter nor the flow may count them.
    other = PredictionStore(store_url)
    other.log([PredictionRecord(str(uuid.uuid4()), champion.name, "99", record, 0.9, 1,
                                start + timedelta(seconds=5, milliseconds=j))
               for j, record in enumerate(records_from_frame(
                   generate(400, 72, SCENARIOS["older_customers"], schema), schema))])
    other.dispose()
    for name, setting in home_env(trained_home, PREDICTION_STORE_URL=store_url,
                                  MODEL_CACHE_DIR=str(tmp_path / "cache"),
                                  DRIFT_WINDOW_ROWS="600").items():
        monkeypatch.setenv(name, setting)

    with running_exporter(trained_home, store_url, tmp_path, window_rows=600) as url:
        computed(url, model_version="1")
        samples = scrape(url + "/metrics")
    flow = measure_window.fn(600, DriftPolicy())

    assert flow["rows"] == value(samples, "onebox_drift_window_rows", model_version="1") == 600
    assert flow["model_version"] == "1"
    assert flow["drift_detected"] is (value(samples, "onebox_drift_detected") == 1.0) is False
    assert flow["drift_share"] == pytest.approx(value(samples, "onebox_drift_share"))
    assert flow["estimated"]["auc"] == pytest.approx(value(samples, "onebox_estimated_auc"))
    assert flow["quality"]["labels"] == value(samples, "onebox_live_labels") == 200
    assert flow["reference_auc"] == pytest.approx(value(samples, "onebox_reference_auc"))


@pytest.mark.parametrize(
    ("computed_ago", "last_error", "healthy", "status"),
    [
        (None, None, False, "starting"),
        (5.0, None, True, "ok"),
        (50.0, "OSError: disk", True, "stale"),       # within 3 intervals of 60 s: figures kept
        (150.0, None, True, "stale"),  # overdue: a computation waiting on MLflow, say
        (90.0, None, True, "ok"),      # one interval and a computation's time: not overdue
        (500.0, "OSError: disk", False, "failing"),   # no success for 3 intervals
        (None, "PermissionError: cache", False, "failing"),  # never a success
    ],
)
def test_health_says_whether_the_figures_are_fresh(
    computed_ago: float | None, last_error: str | None, healthy: bool, status: str
) -> None:
    from monitoring.exporter import Snapshot, health

    now = 1_000_000.0
    snapshot = Snapshot(computed_at=0.0 if computed_ago is None else now - computed_ago,
                        last_error=last_error)
    assert health(snapshot, 60.0, now)[0] is healthy
    assert health(snapshot, 60.0, now)[1]["status"] == status


def test_exporter_that_cannot_compute_is_unhealthy_and_says_why(
    trained_home: Path, tmp_path: Path
) -> None:
    """A model cache it cannot write (the container's root-owned volume, once) fails every
    computation: /health must not say 200 then."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the model cache should be")
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    port = processes.free_port()
    env = home_env(trained_home, PREDICTION_STORE_URL=store_url,
                   MODEL_CACHE_DIR=str(blocked / "cache"))
    with open(tmp_path / "exporter.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitoring.exporter", "--bind", f"127.0.0.1:{port}",
             "--interval", "1"],
            env={**os.environ, **env}, cwd=REPO_ROOT, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if answer.json()["last_error"]:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        assert answer is not None and answer.status_code == 503, answer and answer.text
        assert answer.json()["status"] == "failing"
        assert "not-a-folder" in answer.json()["last_error"]
    finally:
        processes.stop(process)


def test_a_window_already_assessed_is_not_assessed_again_until_a_row_or_a_label_arrives(
    trained_home: Path, tmp_path: Path, schema: Schema, champion: registry.LoadedModel,
) -> None:
    """An idle stack's exporter reads its window every interval and assesses it only when
    something changed: its figures stand (confirmed, fresh on /health) meanwhile, and a new
    prediction or a new outcome brings a new assessment."""
    from monitoring.exporter import DriftExporter

    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    frame = generate(400, 71, schema=schema)
    log_scored(store_url, champion, frame, datetime.now(UTC) - timedelta(minutes=5))
    exporter = DriftExporter(settings_for(trained_home, PREDICTION_STORE_URL=store_url,
                                          MODEL_CACHE_DIR=str(tmp_path / "cache")),
                             window_rows=1000, interval_seconds=60)
    try:
        exporter.compute_once()
        first = exporter.snapshot.assessment
        assert first is not None and first.rows == 400
        confirmed_at = exporter.snapshot.computed_at
        time.sleep(0.01)
        exporter.compute_once()  # nothing served or labelled since
        assert exporter.snapshot.assessment is first
        assert exporter.snapshot.computed_at > confirmed_at and not exporter.snapshot.last_error

        store = PredictionStore(store_url)
        newest = store.recent(1)["prediction_id"].iloc[0]
        store.record_feedback(newest, 1)  # an outcome arrives
        store.dispose()
        exporter.compute_once()
        labelled = exporter.snapshot.assessment
        assert labelled is not first and labelled.quality.labels == 1

        log_scored(store_url, champion, frame.head(10), datetime.now(UTC))  # new rows
        exporter.compute_once()
        assert exporter.snapshot.assessment is not labelled
        assert exporter.snapshot.assessment.rows == 410
    finally:
        exporter.store.dispose()
