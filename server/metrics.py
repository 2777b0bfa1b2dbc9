"""Prometheus metrics of the predictor, correct across gunicorn workers.

With several workers each process counts on its own; prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by server/gunicorn.conf.py
before any worker starts) writes every process's values to files there, and a
scrape of any worker adds them up.  Without that variable (a single process, the
tests' in-process app) the metrics live in the app's own registry.
"""

from __future__ import annotations

import os

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from core.task import Task

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The statuses /predict answers with (server/views.py): 503 is the store, never a client.
PREDICT_STATUSES = ("200", "400", "401", "403", "413", "422")
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode values go to files, not to a registry; the scrape reads them.
        registry = None if self.multiprocess else CollectorRegistry()
        self._registry = registry
        self.requests = Counter(
            "onebox_http_requests_total", "HTTP requests by endpoint and status code.",
            ["endpoint", "status"], registry=registry)
        self.latency = Histogram(
            "onebox_http_request_duration_seconds", "Time to answer a request, by endpoint.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.predictions = Counter(
            "onebox_predictions_total", "Records scored, by model version.",
            ["model_version"], registry=registry)
        self.probability = Histogram(
            "onebox_predicted_probability",
            "Predicted probabilities of the positive class (a binary model).",
            buckets=PROBABILITY_BUCKETS, registry=registry)
        # A number's distribution depends on its unit: its count and sum (so its mean over
        # time) here; its drift is the exporter's test against the reference.
        self.value = Summary(
            "onebox_predicted_value", "Predicted numbers (a regression model).",
            registry=registry)
        self.model_version = Gauge(
            "onebox_model_version", "Version of the model each worker serves.",
            ["model_name"], multiprocess_mode="liveall", registry=registry)
        self.model_from_cache = Gauge(
            "onebox_model_from_local_cache",
            "1 when a worker serves its local copy because MLflow was unreachable.",
            multiprocess_mode="livemax", registry=registry)
        self.log_backlog = Gauge(
            "onebox_prediction_log_backlog",
            "Predictions answered but not yet written to the store (in memory).",
            multiprocess_mode="livesum", registry=registry)
        self.spooled_rows = Gauge(
            "onebox_prediction_log_spooled_rows",
            "Predictions waiting in the local spool for the store to come back.",
            multiprocess_mode="livemax", registry=registry)
        self.dropped_rows = Counter(
            "onebox_prediction_log_dropped_rows",
            "Predictions answered but not kept: the store was away and the spool could not "
            "be written (disk full, read-only).", registry=registry)
        self.spool_writable = Gauge(
            "onebox_prediction_log_spool_writable",
            "0 when a worker's last write to the spool failed, else 1.",
            multiprocess_mode="livemin", registry=registry)
        self.feedback_waits = Counter(
            "onebox_feedback_log_waits_total",
            "/feedback requests that waited for the prediction log: the id was issued here "
            "but not written yet (a made-up id never waits).", registry=registry)
        self.auth_refusals = Counter(
            "onebox_auth_refusals_total",
            "Requests refused for their API key, by status (401: missing, invalid or "
            "expired; 403: wrong scope).", ["status"], registry=registry)
        # /predict's answers exist from the start at 0: Prometheus's increase() cannot see
        # a series' first value, so a refusal that created its series would count as none
        # (the reports' refusal rate, the PredictionsRefused alert).
        for status in PREDICT_STATUSES:
            self.requests.labels("/predict", status)

    def observe_predictions(self, task: Task, predictions: list[float]) -> None:
        """A request's predictions into the metric of what the task predicts."""
        observe_many({"probability": self.probability, "value": self.value}
                     [task.logged_prediction], predictions)

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self._registry)


SMALL_BATCH = 8


def observe_many(histogram: Histogram | Summary, values: list[float]) -> None:
    """`histogram.observe(v)` for every value, in one update per bucket (a summary: one
    update of its count and one of its sum).

    In multiprocess mode every observe() is a locked write to an mmap'd file; a
    1,000-record batch made 2,000 of them.  prometheus_client (pinned) keeps one
    non-cumulative counter per bucket (the first bound >= the value) and a sum: we
    add to those directly.  A test holds the exposition equal to per-value observe().
    """
    if isinstance(histogram, Summary):
        histogram._count.inc(len(values))
        histogram._sum.inc(float(sum(values)))
        return
    if len(values) <= SMALL_BATCH:
        # numpy's call costs more than a few observe() calls, and it releases the GIL:
        # getting it back under load waited behind the other request threads.
        for value in values:
            histogram.observe(value)
        return
    histogram._raise_if_not_observable()
    counts = np.bincount(
        np.searchsorted(histogram._upper_bounds, np.asarray(values, dtype=float), side="left"),
        minlength=len(histogram._upper_bounds))
    histogram._sum.inc(float(sum(values)))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)
