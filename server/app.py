"""The predictor's app factory and the state its views serve from.

Served as `gunicorn -c server/gunicorn.conf.py 'server.app:create_app()'`; tests hand
`create_app` their own settings.  The state (the followed model, the prediction log,
the metrics, the API keys) lives on the app, as `app.extensions["onebox"]`; the views
(server/views.py) read it from there.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings, SettingsError
from core.store import PredictionBatch, PredictionStore
from server.auth import KeyRing
from server.ids import load_or_create_key, new_prediction_ids
from server.metrics import Metrics, observe_many
from server.model_source import FROM_LOCAL_CACHE, ModelFollower, ServedModel
from server.openapi import OpenApiDocuments
from server.prediction_log import PredictionLogger
from server.spool import Spool

log = logging.getLogger(__name__)

EXTENSION_KEY = "onebox"
ID_KEY_FILE = "prediction-id.key"


class Predictor:
    """What the app serves with: the followed model, the prediction log, the metrics, the
    API keys and the key that tags prediction ids."""

    def __init__(self, settings: Settings, follower: ModelFollower, store: PredictionStore,
                 prediction_log: PredictionLogger | None, metrics: Metrics, keys: KeyRing,
                 id_key: bytes, documents: OpenApiDocuments):
        self.settings = settings
        self.follower = follower
        self.store = store
        self.prediction_log = prediction_log
        self.metrics = metrics
        self.keys = keys
        self.id_key = id_key
        self.documents = documents
        self._dropped_counted = 0  # the log's dropped rows already added to the metric

    def predict(self, served: ServedModel, records: list[dict[str, Any]],
                columns: dict[str, Any] | None = None, *,
                explain: bool = False) -> list[dict[str, Any]]:
        """Score, answer and log `records`; with `explain`, each answer also carries its
        score split by feature (computed first: a refusal logs nothing)."""
        model = served.model
        explanations = served.explain(records, columns) if explain else None
        probabilities = served.predict_proba(records, columns).tolist()
        threshold = model.threshold
        ids = new_prediction_ids(len(records), self.id_key)
        decisions = [probability >= threshold for probability in probabilities]
        answers = [{"prediction_id": prediction_id, "churn_probability": probability,
                    "churn": decision}
                   for prediction_id, probability, decision in zip(ids, probabilities, decisions,
                                                                   strict=True)]
        if explanations is not None:
            for answer, explanation in zip(answers, explanations, strict=True):
                answer["explanation"] = explanation
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
            self.metrics.spool_writable.set(0.0 if logger.spool_error else 1.0)
            dropped = logger.dropped_rows  # a counter: add what is new since the last update
            if dropped > self._dropped_counted:
                self.metrics.dropped_rows.inc(dropped - self._dropped_counted)
                self._dropped_counted = dropped

    def close(self) -> None:
        self.follower.close()
        if self.prediction_log is not None:
            self.prediction_log.close()
        self.store.dispose()


def current_predictor() -> Predictor:
    return current_app.extensions[EXTENSION_KEY]


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory; tests pass their own settings."""
    from server.views import api

    settings = settings or Settings.from_env()
    keys = KeyRing(settings.api_keys)
    if settings.app_env != "local" and not keys.enabled:
        raise SettingsError("PREDICTOR_API_KEYS must name at least one key outside "
                            "APP_ENV=local: the predictor would answer anyone")
    if not keys.enabled:
        log.warning("no API keys configured (PREDICTOR_API_KEYS): /predict and /feedback "
                    "answer anyone; the compose stack always configures keys")
    id_key = (settings.prediction_id_key.get_secret_value().encode()
              if settings.prediction_id_key is not None
              else load_or_create_key(settings.home / ID_KEY_FILE))
    follower = ModelFollower(settings)
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    _create_store_schema(store)
    metrics = Metrics()
    documents = OpenApiDocuments(max_batch_records=settings.max_batch_records,
                                 max_body_bytes=settings.max_body_bytes,
                                 api_keys=keys.enabled)
    predictor = Predictor(settings, follower, store, None, metrics, keys, id_key, documents)
    if settings.prediction_log_enabled:
        predictor.prediction_log = PredictionLogger(
            store, Spool(settings.spool_dir), on_progress=predictor.update_gauges)
    predictor.update_gauges()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = predictor
    app.before_request(_start_timer)
    app.after_request(_count)
    app.register_blueprint(api)
    return app


def _start_timer() -> None:
    g.started = time.perf_counter()


def _count(response: Response) -> Response:
    metrics = current_predictor().metrics
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.requests.labels(endpoint, str(response.status_code)).inc()
    metrics.latency.labels(endpoint).observe(time.perf_counter() - g.get("started", 0.0))
    return response


def _create_store_schema(store: PredictionStore) -> None:
    # The predictor must start while the store is away (predictions then spool); the
    # tables are created by whichever later start reaches it, or by the stack's setup step.
    try:
        store.create_schema()
    except SQLAlchemyError as exc:
        log.warning("prediction store unreachable at start (%s); predictions will spool", exc)
