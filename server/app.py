"""The predictor: `POST /predict`, `POST /feedback`, `GET /health`, `GET /model`,
`GET /metrics`, `GET /openapi.json`.

Served as `gunicorn -c server/gunicorn.conf.py 'server.app:create_app()'`.
Input is validated against the schema that travels with the served model
version; anything a client can get wrong is a 4xx whose message names the
field and the problem.  A 5xx is a bug, or (503) a store that is away.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from core.schema import FieldProblem, RecordInvalid
from core.settings import Settings
from core.store import FeedbackResult, PredictionBatch, PredictionStore
from server.ids import new_prediction_ids
from server.metrics import Metrics, observe_many
from server.model_source import FROM_LOCAL_CACHE, ModelFollower, ServedModel
from server.openapi import OpenApiDocuments
from server.prediction_log import PredictionLogger
from server.spool import Spool

log = logging.getLogger(__name__)

EXTENSION_KEY = "onebox"


class BadRequest(Exception):
    """A client error: HTTP status and the problems, each naming a field."""

    def __init__(self, status: int, problems: list[FieldProblem]):
        self.status = status
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class Predictor:
    """What the app serves with: the followed model, the prediction log, the metrics."""

    def __init__(self, settings: Settings, follower: ModelFollower, store: PredictionStore,
                 prediction_log: PredictionLogger | None, metrics: Metrics):
        self.settings = settings
        self.follower = follower
        self.store = store
        self.prediction_log = prediction_log
        self.metrics = metrics

    def predict(self, served: ServedModel, records: list[dict[str, Any]],
                columns: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        model = served.model
        probabilities = served.predict_proba(records, columns).tolist()
        threshold = model.threshold
        ids = new_prediction_ids(len(records))
        decisions = [probability >= threshold for probability in probabilities]
        answers = [{"prediction_id": prediction_id, "churn_probability": probability,
                    "churn": decision}
                   for prediction_id, probability, decision in zip(ids, probabilities, decisions,
                                                                   strict=True)]
        if self.prediction_log is not None:
            self.prediction_log.submit(PredictionBatch(
                model.name, model.version, datetime.now(UTC), ids, records, probabilities,
                [int(decision) for decision in decisions]))
        self.metrics.predictions.labels(model.version).inc(len(records))
        observe_many(self.metrics.probability, probabilities)
        return answers

    def update_gauges(self, prediction_log: PredictionLogger | None = None) -> None:
        served = self.follower.current
        self.metrics.model_version.labels(served.model.name).set(float(served.version))
        self.metrics.model_from_cache.set(1.0 if served.source == FROM_LOCAL_CACHE else 0.0)
        logger = prediction_log or self.prediction_log
        if logger is not None:
            self.metrics.log_backlog.set(logger.backlog)
            self.metrics.spooled_rows.set(logger.spooled_rows)

    def close(self) -> None:
        self.follower.close()
        if self.prediction_log is not None:
            self.prediction_log.close()
        self.store.dispose()


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory; tests pass their own settings."""
    settings = settings or Settings.from_env()
    follower = ModelFollower(settings)
    store = PredictionStore(settings.prediction_store_url)
    _create_store_schema(store)
    metrics = Metrics()
    predictor = Predictor(settings, follower, store, None, metrics)
    if settings.prediction_log_enabled:
        predictor.prediction_log = PredictionLogger(
            store, Spool(settings.spool_dir), on_progress=predictor.update_gauges)
    predictor.update_gauges()
    documents = OpenApiDocuments(max_batch_records=settings.max_batch_records,
                                 max_body_bytes=settings.max_body_bytes)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = predictor

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", 0.0))
        return response

    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest) -> tuple[Response, int]:
        return jsonify(error=str(exc),
                       problems=[{"field": p.field, "problem": p.problem}
                                 for p in exc.problems]), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        # Werkzeug's own errors (404, 405, 413) as JSON, like ours.
        response = jsonify(error=f"{exc.name}: {exc.description}",
                           problems=[{"field": "body" if exc.code == 413 else "request",
                                      "problem": exc.description}])
        # Keep the error's own headers (a 405 must say which methods are allowed: RFC 9110).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, exc.code or 500

    @app.errorhandler(SQLAlchemyError)
    def _store_unavailable(exc: SQLAlchemyError) -> tuple[Response, int]:
        log.warning("prediction store error: %s", exc)
        return jsonify(error="the prediction store is unavailable; retry later",
                       problems=[{"field": "request",
                                  "problem": "prediction store unavailable"}]), 503

    @app.post("/predict")
    def predict() -> Response:
        payload = _json_body()
        served = follower.current  # one version for the whole request, even mid-swap
        schema = served.model.schema
        if isinstance(payload, list):
            if not payload:
                raise BadRequest(422, [FieldProblem("body", "batch is empty")])
            limit = settings.max_batch_records
            if len(payload) > limit:
                raise BadRequest(413, [FieldProblem(
                    "body", f"batch of {len(payload)} records is over the limit of {limit}")])
            try:
                batch = schema.validate_batch(payload)
            except RecordInvalid as exc:
                raise BadRequest(422, exc.problems) from None
            answers = predictor.predict(served, batch.records, batch.columns)
            return _json_response({"predictions": answers, "model": _model_info(served)})
        try:
            record = schema.validate_record(payload)
        except RecordInvalid as exc:
            raise BadRequest(422, exc.problems) from None
        answer = predictor.predict(served, [record])[0]
        return _json_response({**answer, "model": _model_info(served)})

    @app.post("/feedback")
    def feedback() -> tuple[Response, int]:
        payload = _json_body()
        if not isinstance(payload, dict):
            raise BadRequest(422, [FieldProblem("body", "must be a JSON object")])
        problems = []
        # Ids are stored in canonical form (lowercase, hyphenated): an uppercased or braced
        # spelling of a real id must find it.
        prediction_id = _canonical_uuid(payload.get("prediction_id"))
        if prediction_id is None:
            problems.append(FieldProblem("prediction_id", "must be a prediction id (a UUID)"))
        actual = payload.get("churn")
        if isinstance(actual, bool):
            actual = int(actual)
        elif not isinstance(actual, int) or actual not in (0, 1):
            problems.append(FieldProblem("churn", "must be 0 or 1 (or false/true)"))
        extra = sorted(set(payload) - {"prediction_id", "churn"})
        problems += [FieldProblem(name or '""', "is not a field of feedback") for name in extra]
        if problems:
            raise BadRequest(422, problems)
        result = store.record_feedback(prediction_id, actual)
        if result is FeedbackResult.UNKNOWN_ID and predictor.prediction_log is not None:
            # The prediction may still be queued, here or in a sibling worker whose writer
            # flushes every flush_interval: write ours, give theirs one more interval.
            predictor.prediction_log.flush(timeout=5.0)
            time.sleep(2 * predictor.prediction_log.flush_interval)
            result = store.record_feedback(prediction_id, actual)
        if result is FeedbackResult.UNKNOWN_ID:
            raise BadRequest(404, [FieldProblem("prediction_id",
                                                f"no prediction with id {prediction_id}")])
        if result is FeedbackResult.CONFLICT:
            raise BadRequest(409, [FieldProblem(
                "churn", "a different outcome was already recorded for this prediction")])
        return jsonify(prediction_id=prediction_id, churn=actual, status=result.value), 200

    @app.get("/health")
    def health() -> Response:
        served = follower.current
        logger = predictor.prediction_log
        return jsonify(
            status="ok",
            model=_model_info(served),
            model_source=served.source,
            registry_error=follower.last_error,
            prediction_log={
                "enabled": logger is not None,
                "store_available": None if logger is None else logger.store_available,
                "backlog": 0 if logger is None else logger.backlog,
                "spooled_rows": 0 if logger is None else logger.spooled_rows,
            },
        )

    @app.get("/model")
    def model_info() -> Response:
        served = follower.current
        return jsonify(**_model_info(served), source=served.source,
                       loaded_at=served.loaded_at, last_check=follower.last_check,
                       fast_path=served.scorer is not None,
                       threshold=served.model.threshold, schema=served.model.schema.to_dict())

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        predictor.update_gauges()
        return Response(metrics.exposition(), mimetype=metrics.content_type)

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        # Generated from the served version's schema, so it follows the model as it moves.
        return Response(documents.for_served(follower.current), mimetype="application/json")

    return app


def _create_store_schema(store: PredictionStore) -> None:
    # The predictor must start while the store is away (predictions then spool); the
    # tables are created by whichever later start reaches it, or by the stack's setup step.
    try:
        store.create_schema()
    except SQLAlchemyError as exc:
        log.warning("prediction store unreachable at start (%s); predictions will spool", exc)


def _model_info(served: ServedModel) -> dict[str, str]:
    return {"name": served.model.name, "version": served.version}


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _json_response(document: dict[str, Any]) -> Response:
    # orjson writes a 1,000-prediction answer ~5x faster than Flask's jsonify; the
    # document holds only str, float, bool and dicts of them, which it writes the same.
    return Response(orjson.dumps(document), mimetype="application/json")


def _json_body() -> Any:
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequest(400, [FieldProblem("body", "is empty; send a JSON document")])
    try:
        # orjson parses ~3x faster than the stdlib; it refuses what the stdlib would
        # refuse too (NaN, Infinity) and a little more (integers beyond 64 bits, text
        # that is not UTF-8, lone surrogates): those go to the stdlib, so the answer is
        # the one it gives (e.g. a 422 naming a field with a huge integer, not a 400).
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(400, [FieldProblem("body", f"is not valid JSON ({exc})")]) from None


def _canonical_uuid(value: Any) -> str | None:
    """`value` as a canonical UUID string, or None when it is not a UUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
