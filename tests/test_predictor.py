"""The predictor through a real gunicorn process: answers, refusals, feedback, logging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core import registry
from core.schema import Schema, model_frame
from core.store import PredictionStore
from operations import processes
from tests.conftest import home_env, set_up_store
from tests.factories import valid_record

pytestmark = pytest.mark.slow

MAX_BATCH = 100
MAX_BODY = 64_000


class Predictor:
    def __init__(self, url: str, process: object, store_url: str):
        self.url = url
        self.process = process
        self.store_url = store_url

    def post(self, path: str, body: object = None, **kwargs: object) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return requests.post(self.url + path, timeout=10, **kwargs)


def start(trained_home: Path, tmp_path: Path, **env: str) -> Iterator[Predictor]:
    port = processes.free_port()
    store_url = env.pop("PREDICTION_STORE_URL", f"sqlite:///{tmp_path / 'predictions.db'}")
    full_env = home_env(
        trained_home,
        PREDICTION_STORE_URL=store_url,
        MODEL_CACHE_DIR=str(tmp_path / "model-cache"),
        # Its own spool (and journal): the home is shared by predictors of other tests.
        SPOOL_DIR=env.pop("SPOOL_DIR", str(tmp_path / "spool")),
        MAX_BATCH_RECORDS=str(MAX_BATCH),
        MAX_BODY_BYTES=str(MAX_BODY),
        **env,
    )
    set_up_store(store_url)
    process = processes.start_predictor(port, full_env, tmp_path / "predictor.log")
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_until_healthy(f"{url}/health", process, timeout=90)
        yield Predictor(url, process, store_url)
    finally:
        processes.stop(process)


@pytest.fixture(scope="module")
def predictor(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    yield from start(trained_home, tmp_path_factory.mktemp("predictor"))


def test_health_names_the_served_model(predictor: Predictor) -> None:
    health = requests.get(predictor.url + "/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["model"] == {"name": "churn-classifier", "version": "1"}
    assert health["model_source"] == "registry"


def test_one_record_gets_id_probability_decision_and_model(
    predictor: Predictor, champion: registry.LoadedModel, schema: Schema
) -> None:
    resp = predictor.post("/predict", valid_record())
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"prediction_id", "churn_probability", "churn", "model"}
    assert body["model"] == {"name": "churn-classifier", "version": "1"}
    expected = float(champion.predict_proba(model_frame(schema, [valid_record()]))[0])
    assert body["churn_probability"] == pytest.approx(expected, abs=1e-6)
    assert body["churn"] == (expected >= champion.threshold)


def test_a_batch_gets_one_answer_per_record_in_order(
    predictor: Predictor, champion: registry.LoadedModel, schema: Schema
) -> None:
    records = [valid_record(customer_age=30 + i, total_revolving_bal=float(40 * i))
               for i in range(40)]
    resp = predictor.post("/predict", records)
    assert resp.status_code == 200
    answers = resp.json()["predictions"]
    assert len(answers) == 40
    assert len({a["prediction_id"] for a in answers}) == 40
    expected = champion.predict_proba(model_frame(schema, records))
    assert [a["churn_probability"] for a in answers] == pytest.approx(list(expected), abs=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (valid_record(customer_age="old"), 422, "customer_age", "must be an integer"),
        (valid_record(gender="X"), 422, "gender", "unknown category"),
        (valid_record(dependent_count=9), 422, "dependent_count", "<= 5"),
        (valid_record(card_category=None), 422, "card_category", "must not be null"),
        ({k: v for k, v in valid_record().items() if k != "credit_limit"}, 422,
         "credit_limit", "is required"),
        (valid_record(favourite_colour="blue"), 422, "favourite_colour", "not a field"),
        ("just a string", 422, "body", "must be a JSON object"),
        (42, 422, "body", "must be a JSON object"),
        ([], 422, "body", "batch is empty"),
        ([valid_record(), valid_record(gender="Q")], 422, "[1].gender", "unknown category"),
        ([valid_record()] * (MAX_BATCH + 1), 413, "body", f"limit of {MAX_BATCH}"),
        # orjson refuses integers beyond 64 bits; the stdlib then parses, and the field
        # is named as before (not a 400 for the whole body).
        (valid_record(customer_age=10**400), 422, "customer_age", "too large"),
        # A batch big enough for the column-wise check, one value bad: named by row.
        ([valid_record()] * 30 + [valid_record(dependent_count=9)], 422,
         "[30].dependent_count", "<= 5"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    predictor: Predictor, body: object, status: int, field: str, words: str
) -> None:
    resp = predictor.post("/predict", body)
    assert resp.status_code == status, resp.text
    problems = resp.json()["problems"]
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"{not json", "is not valid JSON"), (b"", "is empty"),
     (b'{"customer_age": NaN}', "is not valid JSON"), (b"\xff\xfe", "is not valid JSON")],
)
def test_a_body_that_is_not_json_gets_400(predictor: Predictor, raw: bytes, words: str) -> None:
    resp = predictor.post("/predict", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert words in resp.json()["problems"][0]["problem"]


def test_a_utf16_body_is_read_as_the_stdlib_reads_it(predictor: Predictor) -> None:
    # JSON in UTF-16 (allowed by RFC 8259's predecessor, read by Python's json): orjson
    # refuses it, the fallback parses it.
    raw = json.dumps(valid_record()).encode("utf-16")
    resp = predictor.post("/predict", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert 0.0 <= resp.json()["churn_probability"] <= 1.0


def test_a_body_over_the_size_limit_gets_413(predictor: Predictor) -> None:
    resp = predictor.post("/predict", data=b"[" + b" " * MAX_BODY + b"]",
                          headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["problems"][0]["field"] == "body"


def test_unknown_route_and_method_are_json_4xx(predictor: Predictor) -> None:
    assert requests.get(predictor.url + "/predict", timeout=5).status_code == 405
    resp = requests.get(predictor.url + "/nowhere", timeout=5)
    assert resp.status_code == 404 and "error" in resp.json()


def test_feedback_is_stored_once_and_unknown_ids_are_404(predictor: Predictor) -> None:
    prediction_id = predictor.post("/predict", valid_record()).json()["prediction_id"]
    first = predictor.post("/feedback", {"prediction_id": prediction_id, "churn": 1})
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    # Another spelling of the same id (uppercase, braces) is the same prediction.
    repeat = predictor.post("/feedback", {"prediction_id": "{" + prediction_id.upper() + "}",
                                          "churn": True})
    assert repeat.status_code == 200 and repeat.json()["status"] == "unchanged"
    assert repeat.json()["prediction_id"] == prediction_id
    conflict = predictor.post("/feedback", {"prediction_id": prediction_id, "churn": 0})
    assert conflict.status_code == 409
    unknown = predictor.post("/feedback", {"prediction_id": "6f1c2f4e-8a4b-4f0e-9c1e-"
                                           "123456789abc", "churn": 1})
    assert unknown.status_code == 404
    assert unknown.json()["problems"][0]["field"] == "prediction_id"
    bad = predictor.post("/feedback", {"prediction_id": "x", "churn": 2})
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json()["problems"]} == {"prediction_id", "churn"}
    store = PredictionStore(predictor.store_url)
    row = store.recent(10_000)
    assert row.set_index("prediction_id").loc[prediction_id, "actual"] == 1
    store.dispose()


def test_every_answered_prediction_is_logged_after_a_graceful_stop(
    trained_home: Path, tmp_path: Path
) -> None:
    server = start(trained_home, tmp_path)
    predictor = next(server)
    answered: list[str] = []
    for i in range(30):
        resp = predictor.post("/predict", [valid_record(customer_age=20 + i)] * 10)
        answered += [a["prediction_id"] for a in resp.json()["predictions"]]
    answered.append(predictor.post("/predict", valid_record()).json()["prediction_id"])
    with pytest.raises(StopIteration):
        next(server)  # SIGTERM: the workers write their queues before they exit
    assert predictor.process.returncode == 0
    store = PredictionStore(predictor.store_url)
    assert sorted(store.ids()) == sorted(answered)
    logged = store.recent(1000)
    assert set(logged["model_version"]) == {"1"}
    assert logged["customer_age"].between(20, 49).all()
    store.dispose()


def test_starts_from_the_local_copy_when_mlflow_is_unreachable(
    trained_home: Path, tmp_path: Path
) -> None:
    # First start fills the local cache from the registry ...
    for _ in start(trained_home, tmp_path):
        pass
    # ... the second finds no MLflow server at all and serves the cached champion.
    unreachable = f"http://127.0.0.1:{processes.free_port()}"
    for predictor in start(trained_home, tmp_path, MLFLOW_TRACKING_URI=unreachable,
                           MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                           MLFLOW_HTTP_REQUEST_TIMEOUT="2"):
        health = requests.get(predictor.url + "/health", timeout=5).json()
        assert health["model_source"] == "local-cache"
        assert health["model"]["version"] == "1"
        resp = predictor.post("/predict", valid_record())
        assert resp.status_code == 200, json.dumps(resp.json())


@pytest.mark.postgres
def test_predictions_are_logged_to_postgres(
    trained_home: Path, tmp_path: Path, postgres_url: str
) -> None:
    answered: list[str] = []
    for predictor in start(trained_home, tmp_path, PREDICTION_STORE_URL=postgres_url):
        for i in range(20):
            resp = predictor.post("/predict", [valid_record(customer_age=30 + i)] * 5)
            answered += [a["prediction_id"] for a in resp.json()["predictions"]]
        feedback = predictor.post("/feedback", {"prediction_id": answered[0], "churn": 1})
        assert feedback.status_code == 200
    store = PredictionStore(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    assert sorted(store.ids()) == sorted(answered)
    logged = store.recent(1000).set_index("prediction_id")
    assert logged.loc[answered[0], "actual"] == 1
    assert logged["actual"].notna().sum() == 1
    store.dispose()
