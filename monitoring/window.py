"""One window, one decision: what the drift exporter shows and the drift-check flow acts on.

Both read the newest DRIFT_WINDOW_ROWS predictions served by the champion (never a
mix of versions: a new champion brings its own reference) and assess them here, so
the flow cannot decide otherwise than the dashboard shows for the same moment.  The
flows (drift-check, report) read it with `read_champion_window`; the exporter, which
keeps its store and the champion open between computations, with `read_window`, the
reading part of the same.

The assessment of a window:
- data drift against the champion's reference sample (monitoring.drift), the
  predicted probability counted only when the reference's predictions are out of
  fold (core.registry: older versions scored their reference in-sample);
- live quality on the rows whose outcome has arrived (monitoring.quality);
- estimated quality before the labels (monitoring.estimate: CBPE from a binary model's
  probabilities, DLE for a number's error), held to the version's figures on the gate's
  holdout: labels arrive weeks late, the estimate at once;
- the alarm (monitoring.drift `drift_alarm`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from core import registry
from core.registry import PREDICTION_COLUMN, LoadedModel
from core.settings import Settings
from core.store import PredictionStore
from core.task import EstimateLimits
from monitoring.cbpe import estimate_quality
from monitoring.drift import Alarm, DriftPolicy, DriftResult, compute_drift, drift_alarm
from monitoring.estimate import EstimatedQuality
from monitoring.quality import LiveQuality, live_quality


def policy_for(model: LoadedModel, policy: DriftPolicy) -> DriftPolicy:
    """The policy as it applies to this version: no prediction alarm on an in-sample
    reference (an overfit model's own training rows look unlike any new customer)."""
    if policy.prediction_alarm and not model.reference_out_of_sample:
        return policy.with_overrides(prediction_alarm=False)
    return policy


def estimate_from_served(model: LoadedModel, served: np.ndarray) -> EstimatedQuality:
    """CBPE on the probabilities `model` served: decided and ranked by them, each weighed
    by the version's expected outcome at that probability (core.calibration)."""
    return estimate_quality(model.calibration.expected_outcome(served), model.threshold,
                            scores=served)


def _cbpe(model: LoadedModel, window: pd.DataFrame) -> EstimatedQuality:
    served = (window["probability"].astype(float).to_numpy() if "probability" in window
              else np.empty(0))
    return estimate_from_served(model, served)


def _dle(model: LoadedModel, window: pd.DataFrame) -> EstimatedQuality:
    estimator = model.loss_estimator
    if estimator is None or window.empty:  # a version from before DLE: no estimate
        return EstimatedQuality.none()
    served = window[model.task.logged_prediction].astype(float).to_numpy()
    return EstimatedQuality(len(window), **estimator.estimate(model.encode(window), served))


# By the task's label_free_method (core.task): the one place that reads it.
LABEL_FREE_ESTIMATES = {"cbpe": _cbpe, "dle": _dle}


def estimate_window(model: LoadedModel, window: pd.DataFrame) -> EstimatedQuality:
    """The window's quality estimated from what `model` served, before any label."""
    return LABEL_FREE_ESTIMATES[model.task.label_free_method](model, window)


class NoChampion(RuntimeError):
    """The registry has no @champion yet: nothing to compare a window with."""


def read_window(store: PredictionStore, model: LoadedModel, rows: int) -> pd.DataFrame:
    """The newest `rows` predictions this version served (oldest first); versions are
    numbered per registered model, so the model's name is part of the version."""
    return store.recent(rows, model_version=model.version, model_name=model.name)


def read_champion_window(settings: Settings, rows: int) -> tuple[LoadedModel, pd.DataFrame]:
    """The champion and the newest `rows` predictions it served, read from the
    configured registry and prediction log (opened for this read, then closed)."""
    model = registry.load_champion(registry.connect(settings), settings)
    if model is None:
        raise NoChampion(f"no @{registry.CHAMPION} for {settings.model_name}: train first")
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    try:
        return model, read_window(store, model, rows)
    finally:
        store.dispose()


def as_drift_frame(window: pd.DataFrame, model: LoadedModel) -> pd.DataFrame:
    """Logged predictions in the reference's layout: the task's logged prediction (the
    probability, or the number) as `prediction`."""
    return window.rename(columns={model.task.logged_prediction: PREDICTION_COLUMN})


def reference_figures(model: LoadedModel) -> dict[str, float]:
    """The version's holdout figures (versions from before they were all kept: the AUC)."""
    if model.holdout_metrics:
        return dict(model.holdout_metrics)
    return {} if model.holdout_auc is None else {"auc": model.holdout_auc}


@dataclass(frozen=True)
class Assessment:
    model_name: str
    model_version: str
    rows: int
    newest_at: datetime | None     # when the newest prediction of the window was served
    drift: DriftResult | None      # None: an empty window
    quality: LiveQuality
    estimated: EstimatedQuality
    reference_auc: float | None    # the version's AUC on the gate's holdout
    estimated_auc_margin: float
    alarm: Alarm
    # The version's holdout figures that live quality is held to, by name (its task's).
    reference: dict[str, float] = field(default_factory=dict)
    # Why the label-free estimate is too poor against the holdout's figures (the
    # EstimatedQualityLow alert's condition, for the reports), or None.
    estimated_shortfall: str | None = None
    # The values the live figures may not pass for this window (a number's RMSE and MAE
    # limits: the ratio times the holdout's, plus both samples' sampling error).
    live_limits: dict[str, float] = field(default_factory=dict)

    @property
    def estimated_quality_low(self) -> bool:
        return self.estimated_shortfall is not None

    def summary(self) -> dict[str, Any]:
        drift = self.drift
        return {
            "rows": self.rows, "model_version": self.model_version,
            "newest_at": None if self.newest_at is None else self.newest_at.isoformat(),
            "drift_detected": self.alarm.detected, "reason": self.alarm.reason,
            "drift_share": None if drift is None else drift.share,
            "drifted_features": [] if drift is None else drift.drifted_features,
            "drifted_relations": [] if drift is None else drift.drifted_relations,
            "prediction_drifted": drift is not None and drift.prediction_drifted,
            "quality": self.quality.as_dict(),
            "estimated": self.estimated.as_dict(),
            "reference_auc": self.reference_auc,
            "reference": self.reference,
            "estimated_quality_low": self.estimated_quality_low,
            "estimated_shortfall": self.estimated_shortfall,
            "live_limits": self.live_limits,
        }


def assess(model: LoadedModel, window: pd.DataFrame, policy: DriftPolicy,
           estimated_auc_margin: float, *, report: bool = False) -> Assessment:
    """Drift, live and estimated quality, and the alarm, of one window of logged
    predictions (`report`: also build Evidently's HTML snapshot on the drift result)."""
    policy = policy_for(model, policy)
    drift = None
    if not window.empty:
        drift = compute_drift(model.reference(), as_drift_frame(window, model), model.schema,
                              policy, report=report)
    task = model.task
    quality = live_quality(window, task)
    estimated = estimate_window(model, window)
    reference = reference_figures(model)
    shortfall = task.estimated_shortfall(
        estimated.figures(), reference,
        EstimateLimits(estimated_auc_margin, policy.max_error_ratio))
    newest = None
    if not window.empty and "created_at" in window:
        newest = pd.to_datetime(window["created_at"], utc=True).max().to_pydatetime()
    return Assessment(
        model_name=model.name, model_version=model.version, rows=len(window), newest_at=newest,
        drift=drift, quality=quality, estimated=estimated, reference_auc=model.holdout_auc,
        estimated_auc_margin=estimated_auc_margin,
        alarm=drift_alarm(drift, quality, policy, task, reference),
        reference=reference, estimated_shortfall=shortfall,
        live_limits=task.live_limits(quality.figures(), reference, policy.quality_limits))
