"""What the predictor serves with, kept on the Flask app: the followed model, the
prediction log, the metrics, the API keys and the key that tags prediction ids.

The app factory (server/app.py) builds one `Predictor` and puts it on the app; the views
(server/views.py) and the request hooks reach it through `current_predictor()`, never
through the factory's module (the Flask tutorial's shape: no import circle).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app

from core.settings import Settings
from core.store import PredictionBatch, PredictionStore
from server.auth import KeyRing
from server.ids import new_prediction_ids
from server.metrics import Metrics
from server.model_source import FROM_LOCAL_CACHE, ModelFollower, ServedModel
from server.openapi import OpenApiDocuments
from server.prediction_log import PredictionLogger

EXTENSION_KEY = "onebox"


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
        predictions = served.predict(records, columns).tolist()
        ids = new_prediction_ids(len(records), self.id_key)
        # What the answer and the log hold is the task's (core.task): a probability and a
        # decision, or the number.
        answers, logged = model.task.answers(ids, predictions, model.serving)
        if explanations is not None:
            for answer, explanation in zip(answers, explanations, strict=True):
                answer["explanation"] = explanation
        if self.prediction_log is not None:
            self.prediction_log.submit(PredictionBatch(
                model.name, model.version, datetime.now(UTC), ids, records, **logged))
        self.metrics.predictions.labels(model.version).inc(len(records))
        self.metrics.observe_predictions(model.task, predictions)
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
