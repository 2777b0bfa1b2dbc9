"""The ceiling of the benchmark: `POST /predict` answered with a constant JSON document.

Served as `gunicorn -c server/gunicorn.conf.py 'benchmarks.predictor.ceiling:create_app()'`,
the predictor's own settings, so the distance between this and the predictor
is what validation, scoring and logging cost, not HTTP or gunicorn.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

# The shape of a predictor answer, so the bytes on the wire are comparable.
ANSWER = json.dumps({
    "prediction_id": "00000000-0000-4000-8000-000000000000",
    "churn_probability": 0.5,
    "churn": False,
    "model": {"name": "churn-classifier", "version": "1"},
})


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/predict")
    def predict() -> Response:
        request.get_data(cache=False)  # the body is read, as any real handler must
        return Response(ANSWER, mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app
