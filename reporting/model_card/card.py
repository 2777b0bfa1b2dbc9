"""What a model card says, computed once from what the train flow hands over after the
gate: the data, the gate's evidence on its own metric, the holdout section of the task,
and the features the model leans on.  No HTML here (reporting.model_card.page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from core.calibration import Calibration, expected_calibration_error
from core.gate import GateDecision
from core.intervals import Interval
from core.schema import Schema, model_frame
from core.task import bootstrap_intervals, regression_metrics, task_of
from reporting.model_card.statistics import (
    CalibrationBin,
    Confusion,
    Curves,
    GateEvidence,
    ResidualSegment,
    calibration_bins,
    confusion_at,
    feature_importance,
    gate_evidence,
    holdout_curves,
    residuals_by_segment,
)

CARDS_DIR = "models"
# nginx serves REPORTS_DIR under this path of the front door (gateway/nginx.conf).
FRONT_DOOR_REPORTS = "/reports"
# ... and MLflow's UI under this one (`make serve` mirrors both for the embedded stack).
FRONT_DOOR_MLFLOW = "/mlflow"
# The predicted-vs-actual chart draws at most this many holdout rows (a seeded sample).
SCATTER_MAX_POINTS = 500
# Residuals are broken down by this many of the most important features.
SEGMENTED_FEATURES = 3


def card_stem(model_name: str, version: str) -> str:
    return f"{model_name}-v{version}"


def card_url(model_name: str, version: str) -> str:
    """The card's address under the front door (what MLflow links to)."""
    return f"{FRONT_DOOR_REPORTS}/{CARDS_DIR}/{card_stem(model_name, version)}.html"


def mlflow_run_url(experiment_id: str, run_id: str) -> str:
    """The training run's page in MLflow's UI, under the front door."""
    return (f"{FRONT_DOOR_MLFLOW}/#/experiments/{quote(experiment_id, safe='')}/runs/"
            f"{quote(run_id, safe='')}")


def mlflow_version_url(model_name: str, version: str) -> str:
    """The registered model version's page in MLflow's UI, under the front door."""
    return (f"{FRONT_DOOR_MLFLOW}/#/models/{quote(model_name, safe='')}/versions/"
            f"{quote(version, safe='')}")


def shown_path(path: str, home: str | None) -> str:
    """A data path as a page may show it: never an absolute path of the training machine.
    Under `home` (ONEBOX_HOME): the path relative to it; elsewhere: the file's name; a
    relative path as given."""
    given = PurePath(path)
    if not given.is_absolute():
        return given.as_posix()
    if home is not None and given.is_relative_to(home):
        return given.relative_to(home).as_posix()
    return given.name


@dataclass(frozen=True)
class TrainingData:
    """Where the version's training table came from."""

    base_path: str
    base_rows: int
    production_rows: int = 0
    # When the labelled production rows were predicted (the base table has no time column).
    production_first_at: datetime | None = None
    production_last_at: datetime | None = None
    # ONEBOX_HOME: the page shows a base path under it relative to it (shown_path).
    home: str | None = None

    @property
    def shown_base_path(self) -> str:
        return shown_path(self.base_path, self.home)

    @property
    def under_home(self) -> bool:
        """The base path shown is relative to ONEBOX_HOME."""
        given = PurePath(self.base_path)
        return (given.is_absolute() and self.home is not None
                and given.is_relative_to(self.home))


@dataclass(frozen=True)
class CardInputs:
    """Everything the card is made from: the train flow hands these over after the gate."""

    model_name: str
    version: str
    run_id: str
    schema: Schema
    pipeline: Any  # the candidate's fitted sklearn Pipeline (preprocessing, estimator)
    threshold: float | None  # a binary model's decision threshold; a number has none
    refit_rows: pd.DataFrame  # train + validation: what the final model was fitted on
    holdout: pd.DataFrame
    # What the version serves for the holdout rows: calibrated probabilities, or numbers.
    holdout_predicted: np.ndarray
    decision: GateDecision
    champion_holdout_predicted: np.ndarray | None
    data: TrainingData
    training_seconds: float
    trials: int
    # The Platt scaling a binary model's probabilities went through (identity: none).
    calibration: Calibration = Calibration()
    # A number's prediction interval (None: a binary model).
    interval: Interval | None = None
    # A number's error on the holdout as DLE estimated it without its labels ({"mae": ...,
    # "rmse": ...}; None: a binary model).
    estimated_error: dict[str, float] | None = None
    # The search's best parameters as logged on the run (without their "best." prefix, as
    # MLflow keeps them: text); None: not known.
    hyperparameters: dict[str, str] | None = None
    # The run's MLflow experiment (the run's link needs it); None: no link.
    experiment_id: str | None = None
    # How many folds scored the refit rows out of fold (what the calibration and the
    # threshold were fitted on); None: not known.
    cross_fit_folds: int | None = None


@dataclass(frozen=True)
class BinaryHoldout:
    """A binary model on the holdout: calibration, the ROC and precision-recall curves,
    and the confusion at its threshold."""

    threshold: float
    # False: the version carries no threshold of its own (the default 0.5 stands).
    threshold_chosen: bool
    calibration: Calibration
    bins: list[CalibrationBin]
    ece: float               # of the served (calibrated) probabilities, equal-count bins
    ece_uncalibrated: float  # of the pipeline's own probabilities
    confusion: Confusion
    curves: Curves | None    # None: the holdout holds one class

    def summary(self) -> dict[str, Any]:
        confusion = self.confusion
        return {
            "threshold": self.threshold, "ece": self.ece,
            "ece_uncalibrated": self.ece_uncalibrated,
            "average_precision": (None if self.curves is None
                                  else self.curves.average_precision),
            "calibration": {"method": self.calibration.method,
                            "slope": self.calibration.slope,
                            "intercept": self.calibration.intercept,
                            "fitted_rows": self.calibration.fitted_rows},
            "confusion": {"threshold": confusion.threshold,
                          "true_positive": confusion.true_positive,
                          "false_positive": confusion.false_positive,
                          "false_negative": confusion.false_negative,
                          "true_negative": confusion.true_negative,
                          "precision": confusion.precision, "recall": confusion.recall,
                          "f1": confusion.f1},
        }


@dataclass(frozen=True)
class RegressionHoldout:
    """A number on the holdout: its errors with intervals, predicted against actual, and
    the residuals by segment of the features it leans on most."""

    unit: str
    figures: dict[str, float]                    # rmse, mae, r2
    intervals: dict[str, tuple[float, float]]    # the same, 95% bootstrap
    points: list[tuple[float, float]]            # (actual, predicted), a seeded sample
    segments: list[ResidualSegment]
    # The served interval on the holdout (None: a version without one): its level, the
    # share of real values inside, the mean width and how it was made.
    interval: dict[str, Any] | None = None
    # The holdout's error as estimated before its labels (DLE), beside `figures`.
    estimated_error: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "threshold": None, "unit": self.unit, "interval": self.interval,
            "estimated_error": self.estimated_error,
            **{f"holdout_{name}": value for name, value in self.figures.items()},
            **{f"holdout_{name}_ci": list(ci) for name, ci in self.intervals.items()},
            "residual_segments": [
                {"feature": s.feature, "segment": s.segment, "rows": s.rows,
                 "mean_actual": s.mean_actual, "mean_residual": s.mean_residual,
                 "rmse": s.rmse} for s in self.segments],
        }


Holdout = BinaryHoldout | RegressionHoldout


@dataclass(frozen=True)
class ModelCard:
    inputs: CardInputs
    created_at: datetime
    evidence: GateEvidence  # the gate's metric, the candidate's and the champion's
    holdout: Holdout
    importance: list[tuple[str, float]]

    @property
    def file_name(self) -> str:
        return f"{card_stem(self.inputs.model_name, self.inputs.version)}.html"

    @property
    def url(self) -> str:
        return card_url(self.inputs.model_name, self.inputs.version)

    @property
    def run_url(self) -> str | None:
        """The training run in MLflow's UI (None: its experiment is not known)."""
        inputs = self.inputs
        if inputs.experiment_id is None:
            return None
        return mlflow_run_url(inputs.experiment_id, inputs.run_id)

    @property
    def version_url(self) -> str:
        return mlflow_version_url(self.inputs.model_name, self.inputs.version)


def _binary_holdout(inputs: CardInputs, y: np.ndarray,
                    importance: list[tuple[str, float]]) -> BinaryHoldout:
    served = np.asarray(inputs.holdout_predicted, dtype=np.float64)
    own = inputs.pipeline.predict_proba(model_frame(inputs.schema, inputs.holdout))[:, 1]
    threshold = float(inputs.threshold if inputs.threshold is not None else 0.5)
    return BinaryHoldout(threshold=threshold, threshold_chosen=inputs.threshold is not None,
                         calibration=inputs.calibration,
                         bins=calibration_bins(y, served),
                         ece=expected_calibration_error(y, served),
                         ece_uncalibrated=expected_calibration_error(y, own),
                         confusion=confusion_at(y, served, threshold),
                         curves=holdout_curves(y, served))


def _regression_holdout(inputs: CardInputs, y: np.ndarray,
                        importance: list[tuple[str, float]]) -> RegressionHoldout:
    predicted = np.asarray(inputs.holdout_predicted, dtype=np.float64)
    y = y.astype(np.float64)
    shown = np.arange(len(y))
    if len(shown) > SCATTER_MAX_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(shown, SCATTER_MAX_POINTS,
                                                        replace=False))
    leaned_on = [name for name, _ in importance[:SEGMENTED_FEATURES]]
    interval = None
    if inputs.interval is not None:
        coverage, width = inputs.interval.coverage_and_width(y, predicted)
        interval = {"level": inputs.interval.level, "coverage": coverage, "width": width,
                    "method": inputs.interval.method}
    return RegressionHoldout(
        unit=inputs.schema.target_spec.unit,
        figures=regression_metrics(y, predicted),
        intervals=bootstrap_intervals(y, predicted),
        points=[(float(y[i]), float(predicted[i])) for i in shown],
        segments=residuals_by_segment(inputs.holdout.reset_index(drop=True), y, predicted,
                                      leaned_on),
        interval=interval, estimated_error=inputs.estimated_error)


# The card's holdout section of each task (core.task names them).
HOLDOUT_SECTIONS = {"binary": _binary_holdout, "regression": _regression_holdout}


def build_card(inputs: CardInputs, now: datetime | None = None) -> ModelCard:
    """Compute the card's figures from the holdout predictions."""
    task = task_of(inputs.schema)
    y = inputs.holdout[inputs.schema.target].to_numpy()
    champion = inputs.champion_holdout_predicted
    importance = feature_importance(inputs.pipeline, inputs.schema, inputs.holdout,
                                    task.estimator_step)
    return ModelCard(
        inputs=inputs, created_at=now or datetime.now(UTC),
        evidence=gate_evidence(task.gate_metric, y, inputs.holdout_predicted, champion),
        holdout=HOLDOUT_SECTIONS[task.name](inputs, y, importance),
        importance=importance)


def summary(card: ModelCard) -> dict[str, Any]:
    """The card's headline figures (the JSON beside it, read by the reports index).  The
    gate's metric names its keys: holdout_auc, champion_auc, auc_difference_ci for churn;
    holdout_rmse, champion_rmse, rmse_difference_ci for a number judged on RMSE."""
    inputs, decision, evidence = card.inputs, card.inputs.decision, card.evidence
    metric = evidence.metric.name
    return {
        "model_name": inputs.model_name,
        "version": inputs.version,
        "task": task_of(inputs.schema).name,
        "created_at": card.created_at.astimezone(UTC).isoformat(timespec="seconds"),
        **card.holdout.summary(),
        "gate_metric": metric,
        "greater_is_better": evidence.metric.greater_is_better,
        f"holdout_{metric}": evidence.candidate,
        f"holdout_{metric}_ci": list(evidence.candidate_ci),
        "holdout_rows": len(inputs.holdout),
        "gate_decision": "promoted" if decision.promoted else "rejected",
        "gate_reason": decision.reason,
        "margin": decision.margin,
        "champion_version": decision.champion_version,
        f"champion_{metric}": decision.champion_score,
        f"{metric}_difference_ci": (None if evidence.difference_ci is None
                                    else list(evidence.difference_ci)),
        "feature_importance": [{"feature": name, "mean_abs_shap": value}
                               for name, value in card.importance],
        "training_seconds": inputs.training_seconds,
        "trials": inputs.trials,
        "run_id": inputs.run_id,
        "run_url": card.run_url,
        "version_url": card.version_url,
        "hyperparameters": inputs.hyperparameters,
        "card": card.file_name,
        "url": card.url,
    }
