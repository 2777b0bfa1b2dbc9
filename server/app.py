"""The predictor: `POST /predict`, `POST /feedback`, `GET /health`, `GET /model`.

Served as `gunicorn -c server/gunicorn.conf.py 'server.app:create_app()'`.
Input is validated against the schema that travels with the served model
version; anything a client can get wrong is a 4xx whose message names the
field and the problem.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from core.schema import FieldProblem, RecordInvalid, model_frame
from core.settings import Settings
from core.store import FeedbackResult, PredictionRecord, PredictionStore
from server.model_source import ServedModel, load_served_model
from server.prediction_log import PredictionLogger

log = logging.getLogger(__name__)

EXTENSION_KEY = "onebox"


class BadRequest(Exception):
    """A client error: HTTP status and the problems, each naming a field."""

    def __init__(self, status: int, problems: list[FieldProblem]):
        self.status = status
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class Predictor:
    """What the app serves with: the model, the prediction log and the limits."""

    def __init__(self, settings: Settings, served: ServedModel, store: PredictionStore,
                 prediction_log: PredictionLogger):
        self.settings = settings
        self.served = served
        self.store = store
        self.prediction_log = prediction_log

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = self.served.model
        probabilities = model.predict_proba(model_frame(model.schema, records))
        log_records, answers = [], []
        for record, probability in zip(records, probabilities, strict=True):
            prediction_id = str(uuid.uuid4())
            probability = float(probability)
            decision = int(probability >= model.threshold)
            log_records.append(PredictionRecord(prediction_id, model.name, model.version,
                                                record, probability, decision))
            answers.append({"prediction_id": prediction_id,
                            "churn_probability": probability,
                            "churn": bool(decision)})
        self.prediction_log.submit(log_records)
        return answers

    def close(self) -> None:
        self.prediction_log.close()
        self.store.dispose()


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory; tests pass their own settings."""
    settings = settings or Settings.from_env()
    served = load_served_model(settings)
    store = PredictionStore(settings.prediction_store_url)
    store.create_schema()
    predictor = Predictor(settings, served, store, PredictionLogger(store))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = predictor

    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest) -> tuple[Response, int]:
        return jsonify(error=str(exc),
                       problems=[{"field": p.field, "problem": p.problem}
                                 for p in exc.problems]), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        # Werkzeug's own errors (404, 405, 413) as JSON, like ours.
        return jsonify(error=f"{exc.name}: {exc.description}",
                       problems=[{"field": "body" if exc.code == 413 else "request",
                                  "problem": exc.description}]), exc.code or 500

    @app.post("/predict")
    def predict() -> Response:
        payload = _json_body()
        schema = predictor.served.model.schema
        if isinstance(payload, list):
            if not payload:
                raise BadRequest(422, [FieldProblem("body", "batch is empty")])
            limit = settings.max_batch_records
            if len(payload) > limit:
                raise BadRequest(413, [FieldProblem(
                    "body", f"batch of {len(payload)} records is over the limit of {limit}")])
            records, problems = [], []
            for i, item in enumerate(payload):
                try:
                    records.append(schema.validate_record(item, where=f"[{i}]."))
                except RecordInvalid as exc:
                    problems.extend(exc.problems)
            if problems:
                raise BadRequest(422, problems)
            answers = predictor.predict(records)
            return jsonify(predictions=answers, model=_model_info(predictor))
        try:
            record = schema.validate_record(payload)
        except RecordInvalid as exc:
            raise BadRequest(422, exc.problems) from None
        answer = predictor.predict([record])[0]
        return jsonify(**answer, model=_model_info(predictor))

    @app.post("/feedback")
    def feedback() -> tuple[Response, int]:
        payload = _json_body()
        if not isinstance(payload, dict):
            raise BadRequest(422, [FieldProblem("body", "must be a JSON object")])
        problems = []
        prediction_id = payload.get("prediction_id")
        if not isinstance(prediction_id, str) or not _is_uuid(prediction_id):
            problems.append(FieldProblem("prediction_id", "must be a prediction id (a UUID)"))
        actual = payload.get("churn")
        if isinstance(actual, bool):
            actual = int(actual)
        if actual not in (0, 1) or isinstance(actual, float):
            problems.append(FieldProblem("churn", "must be 0 or 1 (or false/true)"))
        extra = sorted(set(payload) - {"prediction_id", "churn"})
        problems += [FieldProblem(name, "is not a field of feedback") for name in extra]
        if problems:
            raise BadRequest(422, problems)
        result = predictor.store.record_feedback(prediction_id, actual)
        if result is FeedbackResult.UNKNOWN_ID:
            # The prediction may still be queued, here or in a sibling worker whose writer
            # flushes every FLUSH_INTERVAL: write ours, give theirs one more interval.
            predictor.prediction_log.flush(timeout=5.0)
            time.sleep(2 * predictor.prediction_log.flush_interval)
            result = predictor.store.record_feedback(prediction_id, actual)
        if result is FeedbackResult.UNKNOWN_ID:
            raise BadRequest(404, [FieldProblem("prediction_id",
                                                f"no prediction with id {prediction_id}")])
        if result is FeedbackResult.CONFLICT:
            raise BadRequest(409, [FieldProblem(
                "churn", "a different outcome was already recorded for this prediction")])
        return jsonify(prediction_id=prediction_id, churn=actual, status=result.value), 200

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", model=_model_info(predictor),
                       model_source=predictor.served.source,
                       log_backlog=predictor.prediction_log.backlog)

    @app.get("/model")
    def model_info() -> Response:
        model = predictor.served.model
        return jsonify(**_model_info(predictor), source=predictor.served.source,
                       threshold=model.threshold, schema=model.schema.to_dict())

    return app


def _model_info(predictor: Predictor) -> dict[str, str]:
    model = predictor.served.model
    return {"name": model.name, "version": model.version}


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _json_body() -> Any:
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequest(400, [FieldProblem("body", "is empty; send a JSON document")])
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, [FieldProblem("body", f"is not valid JSON ({exc})")]) from None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

