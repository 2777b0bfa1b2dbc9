"""The drift exporter: every DRIFT_INTERVAL_SECONDS it compares the newest window of
logged predictions with the champion's reference sample and serves the result as
Prometheus metrics on :8085 (`/metrics`; `/health` for compose).

It follows the champion: each cycle resolves @champion, and a new version brings
its own reference sample.  Its cost is bounded by a cap: the window is the newest
DRIFT_WINDOW_ROWS predictions (default 3,000), never more, however much traffic
arrives; the reference is the model's fixed sample (`python -m
benchmarks.exporter` measures the cost by window size).  A window it has already
assessed -- the same version, the same predictions, the same outcomes: nothing served or
labelled since -- is not assessed again: its figures stand, confirmed at this cycle (an
idle stack's exporter reads the window and does nothing else).

`onebox_drift_detected` is the alarm (monitoring.drift): 1 when a feature or the
prediction drifted at the DRIFT_FALSE_ALARM_RATE budget, or live quality fell short on
at least QUALITY_MIN_LABELS labels: a binary model's AUC below QUALITY_MIN_AUC, a
regression model's error above QUALITY_MAX_ERROR_RATIO times its holdout error.  The
Prometheus alert fires on it; the other gauges say why.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core import registry
from core.registry import LoadedModel
from core.settings import Settings
from core.store import PredictionStore
from monitoring.drift import DriftPolicy
from monitoring.quality import LiveQuality
from monitoring.window import Assessment, assess, read_window

log = logging.getLogger(__name__)

LIVE_FIGURES = frozenset(LiveQuality.figure_names())


@dataclass
class Snapshot:
    """The last computation, as the scrape shows it."""

    model_name: str = ""
    model_version: str = ""
    window_rows: int = 0
    assessment: Assessment | None = None
    computed_at: float = 0.0      # when the figures were last computed or confirmed
    duration_seconds: float = 0.0
    window_key: int | None = None  # the assessed window: its version, ids and outcomes
    errors_total: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class DriftExporter:
    def __init__(self, settings: Settings, *, window_rows: int, interval_seconds: float):
        self.settings = settings
        self.window_rows = window_rows
        self.interval_seconds = interval_seconds
        self.policy = DriftPolicy.from_settings(settings)
        self.client = registry.connect(settings)
        self.store = PredictionStore(settings.prediction_store_url.get_secret_value())
        self.snapshot = Snapshot()
        self._model: LoadedModel | None = None
        self._stop = threading.Event()

    def champion(self) -> LoadedModel | None:
        """The current champion; reloaded (with its reference) when the alias moves."""
        version = registry.version_by_alias(self.client, self.settings.model_name,
                                            registry.CHAMPION)
        if version is None:
            return None
        if self._model is None or self._model.version != str(version.version):
            self._model = registry.load_version(self.client, self.settings.model_name,
                                                str(version.version),
                                                self.settings.model_cache_dir)
            log.info("reference is now %s v%s", self._model.name, self._model.version)
        return self._model

    def compute_once(self) -> None:
        started = time.perf_counter()
        try:
            model = self.champion()
            if model is None:
                raise RuntimeError(f"no @{registry.CHAMPION} for {self.settings.model_name}")
            window = read_window(self.store, model, self.window_rows)
            key = window_key(model, window)
            with self.snapshot.lock:
                unchanged = (key == self.snapshot.window_key
                             and self.snapshot.assessment is not None)
            if unchanged:
                with self.snapshot.lock:
                    self.snapshot.computed_at = time.time()
                    self.snapshot.last_error = None
                return
            assessment = assess(model, window, self.policy, self.settings.estimated_auc_margin)
        except Exception as exc:  # keep serving the last good numbers; count and say why
            with self.snapshot.lock:
                self.snapshot.errors_total += 1
                self.snapshot.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("drift computation failed: %s", exc)
            return
        with self.snapshot.lock:
            self.snapshot.model_name = model.name
            self.snapshot.model_version = model.version
            self.snapshot.window_rows = len(window)
            self.snapshot.assessment = assessment
            self.snapshot.computed_at = time.time()
            self.snapshot.duration_seconds = time.perf_counter() - started
            self.snapshot.last_error = None
            self.snapshot.window_key = key

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self.compute_once()
            self._stop.wait(self.interval_seconds)

    def stop(self) -> None:
        self._stop.set()


def window_key(model: LoadedModel, window: Any) -> int:
    """What the assessment of a window depends on and can change between cycles: the
    version (its reference), the predictions in it and the outcomes known for them."""
    ids = tuple(window["prediction_id"].astype(str)) if "prediction_id" in window else ()
    # As numbers: a regression outcome of 151.5 corrected to 151.2 is a new window.
    outcomes = tuple(window["actual"].astype(float).fillna(-1.0)) if "actual" in window else ()
    return hash((model.name, model.version, ids, outcomes))


# The label-free estimates (monitoring.estimate), by figure.
_CBPE = "from the served probabilities alone (CBPE; no labels; blind to a concept change)."
_DLE = ("from the features and the predictions alone (DLE: models of the error fitted on "
        "out-of-fold rows; no labels; blind to a concept change).")
ESTIMATE_HELP = {"auc": f"Expected ROC AUC of the window {_CBPE}",
                 "precision": f"Expected precision of the window {_CBPE}",
                 "recall": f"Expected recall of the window {_CBPE}",
                 "mae": f"Expected MAE of the window {_DLE}",
                 "rmse": f"Expected RMSE of the window {_DLE}"}


class SnapshotCollector(Collector):
    """Turns the exporter's last snapshot into metric families at scrape time."""

    def __init__(self, snapshot: Snapshot, policy: DriftPolicy, estimated_auc_margin: float):
        self.snapshot = snapshot
        self.policy = policy
        self.estimated_auc_margin = estimated_auc_margin

    def collect(self) -> Iterable[GaugeMetricFamily]:
        s = self.snapshot
        with s.lock:
            model = [s.model_name, s.model_version]
            window = GaugeMetricFamily("onebox_drift_window_rows",
                                       "Predictions in the compared window.",
                                       labels=["model_name", "model_version"])
            window.add_metric(model, s.window_rows)
            yield window
            yield _gauge("onebox_drift_last_computed_timestamp_seconds",
                         "Unix time of the last successful computation.", s.computed_at)
            yield _gauge("onebox_drift_computation_seconds",
                         "How long the last computation took.", s.duration_seconds)
            yield _gauge("onebox_drift_errors_total", "Failed computations since start.",
                         s.errors_total)
            yield _gauge("onebox_drift_false_alarm_rate",
                         "Chance that a window of clean traffic raises the data-drift alarm.",
                         self.policy.false_alarm_rate)
            yield _gauge("onebox_live_auc_threshold",
                         "The alarm rises when the live AUC is below this.", self.policy.min_auc)
            yield _gauge("onebox_live_error_ratio_threshold",
                         "The alarm rises when a regression model's live error is this many "
                         "times its holdout error.", self.policy.max_error_ratio)
            yield _gauge("onebox_estimated_auc_margin",
                         "EstimatedQualityLow fires when onebox_estimated_auc is this far below "
                         "onebox_reference_auc.", self.estimated_auc_margin)
            assessment = s.assessment
            if assessment is None:
                return
            drift, quality, alarm = assessment.drift, assessment.quality, assessment.alarm
            if assessment.newest_at is not None:
                yield _gauge("onebox_drift_window_newest_timestamp_seconds",
                             "Unix time of the newest prediction in the window.",
                             assessment.newest_at.timestamp())
            for name, value in sorted(assessment.reference.items()):
                if name in LIVE_FIGURES:  # what a live figure is held to (AUC, RMSE, MAE...)
                    yield _gauge(f"onebox_reference_{name}",
                                 f"The champion's {name} on the gate's holdout, when it was "
                                 "trained.", value)
            if "interval_level" in assessment.reference:  # a version serving intervals
                yield _gauge("onebox_interval_level",
                             "The level of the champion's answered intervals: how often "
                             "they should hold the real number (IntervalCoverageLow).",
                             assessment.reference["interval_level"])
            estimated = assessment.estimated
            yield _gauge("onebox_estimated_rows",
                         "Predictions the quality estimate is made from (the window).",
                         estimated.rows)
            for name, value in estimated.figures().items():
                yield _gauge(f"onebox_estimated_{name}", ESTIMATE_HELP[name], value)
            if alarm is not None:
                yield _gauge("onebox_drift_detected",
                             "1 when data drift or low live quality calls for attention "
                             "(the alert fires on this).", 1.0 if alarm.detected else 0.0)
                yield _gauge("onebox_data_drift_detected",
                             "1 when a feature or the prediction drifted.",
                             1.0 if alarm.data_drift else 0.0)
                yield _gauge("onebox_live_quality_degraded",
                             "1 when live quality is below its limit on enough labels "
                             "(a binary model's AUC, a number's RMSE or MAE).",
                             1.0 if alarm.quality_degraded else 0.0)
            if drift is not None:
                score = GaugeMetricFamily("onebox_feature_drift_score",
                                          "Drift p-value per feature (method in the label); "
                                          "drifted when below onebox_drift_pvalue_threshold.",
                                          labels=["feature", "method"])
                flag = GaugeMetricFamily("onebox_feature_drifted",
                                         "1 when the feature's drift test failed.",
                                         labels=["feature"])
                conditional = GaugeMetricFamily(
                    "onebox_feature_conditional_drift_score",
                    "Drift p-value of the feature's residual given the other features "
                    "(only features the others explain well).", labels=["feature"])
                conditional_flag = GaugeMetricFamily(
                    "onebox_feature_conditional_drifted",
                    "1 when the feature's relation to the others changed (its residual's "
                    "test failed).", labels=["feature"])
                for name, col in drift.features.items():
                    score.add_metric([name, col.method], col.score)
                    flag.add_metric([name], 1.0 if col.drifted else 0.0)
                for name, col in drift.conditional.items():
                    conditional.add_metric([name], col.score)
                    conditional_flag.add_metric([name], 1.0 if col.drifted else 0.0)
                yield score
                yield flag
                yield conditional
                yield conditional_flag
                yield _gauge("onebox_drift_share", "Share of features that drifted.",
                             drift.share)
                yield _gauge("onebox_drift_share_threshold",
                             "Data drift when onebox_drift_share is at least this "
                             "(or the prediction drifted).", drift.effective_share_threshold)
                yield _gauge("onebox_drift_pvalue_threshold",
                             "A column drifted when its p-value is below this "
                             "(false-alarm rate / columns tested).",
                             next(iter(drift.features.values())).threshold)
                if drift.joint is not None:
                    yield _gauge("onebox_joint_drift_score",
                                 "P-value of the classifier two-sample test: can a small model "
                                 "tell the window's rows from the reference's?", drift.joint.score)
                    yield _gauge("onebox_joint_drifted",
                                 "1 when the features together drifted (the joint test failed).",
                                 1.0 if drift.joint.drifted else 0.0)
                    if drift.joint_auc is not None:
                        yield _gauge("onebox_joint_drift_auc",
                                     "Held-out AUC of the joint test's classifier (0.5: it "
                                     "cannot tell the window from the reference).",
                                     drift.joint_auc)
                if drift.prediction is not None:
                    yield _gauge("onebox_prediction_drift_score",
                                 "Drift p-value of the prediction (probability or number).",
                                 drift.prediction.score)
                    yield _gauge("onebox_prediction_drifted",
                                 "1 when the prediction (probability or number) drifted.",
                                 1.0 if drift.prediction.drifted else 0.0)
            if quality is not None:
                yield _gauge("onebox_live_labels", "Predictions in the window with feedback.",
                             quality.labels)
                for name, value in quality.figures().items():
                    yield _gauge(f"onebox_live_{name}",
                                 f"Live {name} on the window's labelled predictions "
                                 "(the model's task's figures).", value)
                for name, value in sorted(assessment.live_limits.items()):
                    yield _gauge(f"onebox_live_{name}_limit",
                                 f"LiveErrorHigh fires when onebox_live_{name} passes this: "
                                 "the larger of QUALITY_MAX_ERROR_RATIO times the holdout's "
                                 "and the holdout's plus three standard errors of the "
                                 "difference.", value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


# A failed computation keeps the last figures on /metrics; /health turns unhealthy once
# the last success is older than this many intervals (or there never was one).
STALE_AFTER_INTERVALS = 3
# A success older than this many intervals means the next computation is overdue (one may
# be running: an interval, plus its own time).
OVERDUE_AFTER_INTERVALS = 2


def health(snapshot: Snapshot, interval_seconds: float, now: float) -> tuple[bool, dict]:
    """Whether the exporter does its job, and what /health says about it.

    ok: the last computation succeeded and the next is not overdue.  stale: the last one
    failed, or the next is overdue (a computation waiting on MLflow or PostgreSQL), but a
    success is recent: the figures are kept.  failing: no success for
    STALE_AFTER_INTERVALS intervals, or none yet after a failure.  starting: nothing
    computed yet.
    """
    with snapshot.lock:
        computed_at, last_error = snapshot.computed_at, snapshot.last_error
        newest = snapshot.assessment.newest_at if snapshot.assessment is not None else None
        body = {"model_version": snapshot.model_version, "computed_at": computed_at,
                "last_error": last_error, "errors_total": snapshot.errors_total,
                "window_rows": snapshot.window_rows,
                # The figures describe traffic up to this moment: old when traffic stopped.
                "newest_prediction_at": None if newest is None else newest.isoformat()}
    age = now - computed_at if computed_at else None
    body["seconds_since_success"] = None if age is None else round(age, 1)
    body["seconds_since_newest_prediction"] = (
        None if newest is None else round(now - newest.timestamp(), 1))
    if age is None:
        status = "starting" if last_error is None else "failing"
    elif age > STALE_AFTER_INTERVALS * interval_seconds:
        status = "failing"
    elif last_error is not None or age > OVERDUE_AFTER_INTERVALS * interval_seconds:
        status = "stale"
    else:
        status = "ok"
    return status in ("ok", "stale"), {"status": status, **body}


def make_wsgi_app(exporter: DriftExporter) -> Any:
    metrics_registry = CollectorRegistry()
    metrics_registry.register(SnapshotCollector(exporter.snapshot, exporter.policy,
                                                exporter.settings.estimated_auc_margin))

    def app(environ: dict, start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [generate_latest(metrics_registry)]
        if path == "/health":
            healthy, body = health(exporter.snapshot, exporter.interval_seconds, time.time())
            start_response("200 OK" if healthy else "503 Service Unavailable",
                           [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /health\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0:8085", help="host:port to serve metrics on")
    parser.add_argument("--window-rows", type=int, default=settings.drift_window_rows)
    parser.add_argument("--interval", type=float, default=settings.drift_interval_seconds)
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    exporter = DriftExporter(settings, window_rows=args.window_rows,
                             interval_seconds=args.interval)
    threading.Thread(target=exporter.run_forever, name="drift", daemon=True).start()
    server = make_server(host, int(port), make_wsgi_app(exporter), handler_class=_QuietHandler)
    log.info("drift exporter on %s (window %d rows, every %.0fs)", args.bind,
             args.window_rows, args.interval)
    try:
        server.serve_forever()
    finally:
        exporter.stop()


if __name__ == "__main__":
    main()
