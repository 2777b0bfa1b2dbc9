"""The predictor's app factory.

Served by gunicorn as server/process.py starts it; tests hand `create_app` their own
settings.  The state (server/predictor.py: the followed model, the prediction log, the
metrics, the API keys) lives on the app, as `app.extensions["onebox"]`; the views
(server/views.py) read it from there.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from core.settings import Settings, SettingsError
from core.store import PredictionStore
from server.auth import KeyRing
from server.ids import load_or_create_key
from server.metrics import Metrics
from server.model_source import ModelFollower
from server.openapi import OpenApiDocuments
from server.prediction_log import PredictionLogger
from server.predictor import EXTENSION_KEY, Predictor, current_predictor
from server.spool import Spool
from server.views import api

log = logging.getLogger(__name__)

ID_KEY_FILE = "prediction-id.key"


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory; tests pass their own settings."""
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

