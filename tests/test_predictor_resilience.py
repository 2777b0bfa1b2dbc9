"""The predictor under load while the world moves: the champion alias changes, the
prediction store dies and comes back.  Real gunicorn, real MLflow store, a real
PostgreSQL server the test owns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests

from core import registry
from core.calibration import Calibration
from core.schema import Schema, model_frame
from core.store import PredictionStore
from operations import processes
from simulation.generator import generate
from simulation.traffic import records_from_frame
from testkit.load import SteadyLoad
from tests.conftest import run_train_flow, settings_for
from tests.factories import valid_record, write_training_csv
from tests.pg_cluster import PgCluster
from tests.test_predictor import start

pytestmark = pytest.mark.slow


def load_on(predictor: object) -> SteadyLoad:
    """Three clients sending single records as fast as they are answered (bounded in
    time), customers of every age from 20 to 79."""
    return SteadyLoad(f"{predictor.url}/predict", threads=3, rate_per_thread=None,
                      max_seconds=120, records=[valid_record(customer_age=20 + i)
                                                for i in range(60)])


@pytest.fixture(scope="module")
def two_versions_home(tmp_path_factory: pytest.TempPathFactory, schema: Schema) -> Path:
    """v1 is @champion; v2 is registered but was not promoted."""
    home = tmp_path_factory.mktemp("two-versions")
    write_training_csv(settings_for(home).data_path, schema, rows=3000)
    assert run_train_flow(home, trials=2)["promoted"]
    assert not run_train_flow(home, trials=1, promotion_margin=1.0)["promoted"]
    return home


def test_every_worker_follows_the_alias_without_a_failed_request(
    two_versions_home: Path, tmp_path: Path
) -> None:
    settings = settings_for(two_versions_home)
    client = registry.connect(settings)
    for predictor in start(two_versions_home, tmp_path, MODEL_POLL_SECONDS="1"):
        with load_on(predictor) as load:
            load.wait_for(200)
            client.set_registered_model_alias(settings.model_name, registry.CHAMPION, "2")
            moved_at = time.monotonic()
            # Within the poll interval (+ loading time) every answer comes from v2.
            deadline = moved_at + 30
            while time.monotonic() < deadline:
                recent = [a.version for a in load.answers[-60:] if a.at > moved_at + 0.5]
                if len(recent) >= 60 and set(recent) == {"2"}:
                    break
                time.sleep(0.2)
            load.wait_for(200)
        assert load.failures == []
        versions = [a.version for a in load.answers]
        assert versions[0] == "1" and set(versions) == {"1", "2"}
        first_v2 = next(a.at for a in load.answers if a.version == "2")
        last_v1 = max(a.at for a in load.answers if a.version == "1")
        assert first_v2 - moved_at < 15 and last_v1 - moved_at < 15
        model = requests.get(predictor.url + "/model", timeout=5).json()
        assert model["version"] == "2" and model["fast_path"] is True


@pytest.fixture
def owned_postgres() -> Iterator[PgCluster]:
    cluster = PgCluster(processes.free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


def test_no_prediction_is_lost_or_doubled_when_postgres_dies_under_load(
    trained_home: Path, tmp_path: Path, owned_postgres: PgCluster
) -> None:
    for predictor in start(trained_home, tmp_path, PREDICTION_STORE_URL=owned_postgres.url,
                           SPOOL_DIR=str(tmp_path / "spool")):
        with load_on(predictor) as load:
            load.wait_for(300)
            owned_postgres.kill()
            killed_at = load.count()
            load.wait_for(400)  # answered while the store is dead
            # Each worker says what it sees; within a replay interval both see the outage.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                health = requests.get(predictor.url + "/health", timeout=5).json()
                if health["prediction_log"]["spooled_rows"] > 0:
                    break
                time.sleep(0.2)
            feedback = predictor.post("/feedback", {"prediction_id": load.answers[0].prediction_id,
                                                    "churn": 1})
            owned_postgres.start()
            load.wait_for(300)
        assert load.failures == []
        assert load.count() - killed_at >= 400
        assert health["prediction_log"]["spooled_rows"] > 0
        assert feedback.status_code == 503 and "unavailable" in feedback.json()["error"]
    # The predictor stopped gracefully: queue written, spool replayed.
    store = PredictionStore(owned_postgres.url.replace("postgresql://",
                                                       "postgresql+psycopg2://"))
    logged = store.ids()
    store.dispose()
    answered = load.answered
    assert len(logged) == len(set(logged))          # exactly once ...
    assert sorted(logged) == sorted(answered)        # ... every answered prediction
    assert not list((tmp_path / "spool").glob("spool-*"))


def test_probabilities_match_the_logged_mlflow_model(
    trained_home: Path, tmp_path: Path, schema: Schema
) -> None:
    frame = generate(100, seed=5, schema=schema)
    records = records_from_frame(frame, schema)
    settings = settings_for(trained_home)
    client = registry.connect(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    logged = registry.download_version(client, settings.model_name, str(champion.version),
                                       tmp_path / "model")
    pyfunc = mlflow.pyfunc.load_model(str(logged))
    # The logged model's own probability, through the calibration stored with the version
    # (MLflow's pyfunc knows nothing of it: `mlflow models serve` answers uncalibrated).
    raw = np.asarray(pyfunc.predict(model_frame(schema, records)))[:, 1]
    metadata = mlflow.models.Model.load(f"{logged}/MLmodel").metadata
    calibration = Calibration.from_json(metadata[registry.CALIBRATION_KEY])
    assert not calibration.is_identity
    expected = calibration.apply(raw)
    for predictor in start(trained_home, tmp_path):
        answers = predictor.post("/predict", records).json()["predictions"]
        singles = [predictor.post("/predict", r).json()["churn_probability"]
                   for r in records[:20]]
    got = np.array([a["churn_probability"] for a in answers])
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(singles, expected[:20], atol=1e-6, rtol=0)


def test_metrics_add_up_across_workers(trained_home: Path, tmp_path: Path) -> None:
    for predictor in start(trained_home, tmp_path, PREDICTOR_WORKERS="2"):
        # /health answered from the first worker up; wait for the second one's gauges.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_worker_pids(predictor.url)) < 2:
            time.sleep(0.2)
        session = requests.Session()
        for _ in range(60):
            # New connections spread the requests over both workers.
            assert requests.post(predictor.url + "/predict", json=valid_record(),
                                 timeout=5).status_code == 200
        for _ in range(5):
            session.post(predictor.url + "/predict", json=valid_record(gender="?"), timeout=5)
        session.post(predictor.url + "/predict", json=[valid_record()] * 10, timeout=5)
        text = requests.get(predictor.url + "/metrics", timeout=5).text
    samples = _samples(text)
    assert samples[('onebox_http_requests_total', (('endpoint', '/predict'),
                                                   ('status', '200')))] == 61
    assert samples[('onebox_http_requests_total', (('endpoint', '/predict'),
                                                   ('status', '422')))] == 5
    assert samples[('onebox_predictions_total', (('model_version', '1'),))] == 70
    assert samples[('onebox_predicted_probability_count', ())] == 70
    assert samples[('onebox_http_request_duration_seconds_count',
                    (('endpoint', '/predict'),))] == 66
    versions = {v for (name, _), v in samples.items() if name == "onebox_model_version"}
    assert versions == {1.0}
    pids = {dict(labels).get("pid") for (name, labels) in samples
            if name == "onebox_model_version"}
    assert len(pids) == 2  # both workers report
    assert samples[('onebox_prediction_log_spooled_rows', ())] == 0


def _worker_pids(url: str) -> set[str]:
    samples = _samples(requests.get(url + "/metrics", timeout=5).text)
    return {dict(labels)["pid"] for name, labels in samples if name == "onebox_model_version"}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out
