"""The task -- binary classification or regression -- decided in one place.

The schema declares the task (`task: binary | regression`, core.schema.TargetSpec); what
differs by it is here, behind one interface, and the rest of the code asks `task_of(schema)`
instead of branching on the task's name:

- what a valid target column is, checked when a table is loaded (a message naming the
  file, the field and what is supported, never a library's traceback from a flow);
- the estimator at the end of the pipeline (XGBClassifier or XGBRegressor) and its step;
- the split's stratification (only with classes) and the cross-fitting folds;
- the search's metric, the gate's, and which way is better;
- what is fitted on the out-of-fold predictions and travels with the version (a binary
  model's calibration and decision threshold; a number's prediction interval and the
  models of its error), and the holdout's figures;
- how a window's quality is estimated before its labels (CBPE, or DLE) and when the
  estimate is too poor;
- what the predictor answers and logs for a prediction, and what feedback carries.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core import bootstrap
from core.calibration import (
    Calibration,
    expected_calibration_error,
    fit_platt,
    reliability_bins,
)
from core.intervals import DEFAULT_LEVEL, Interval, fit_interval
from core.loss_estimation import LossEstimator
from core.schema import Schema, TargetSpec

SUPPORTED = ("supported: task: binary (a target of 0 and 1) or task: regression "
             "(a numeric target)")


class TargetInvalid(ValueError):
    """A table's target column does not fit the schema's task; the message names the file,
    the field and what is supported."""


@dataclass(frozen=True)
class Metric:
    """A figure a model is searched and judged on."""

    name: str
    greater_is_better: bool

    def score(self, y_true: np.ndarray, predicted: np.ndarray) -> float:
        from sklearn.metrics import mean_absolute_error, roc_auc_score, root_mean_squared_error

        scorer = {"auc": roc_auc_score, "rmse": root_mean_squared_error,
                  "mae": mean_absolute_error}[self.name]
        return float(scorer(y_true, predicted))

    @property
    def direction(self) -> str:
        """Optuna's word for the way the search goes."""
        return "maximize" if self.greater_is_better else "minimize"

    @property
    def label(self) -> str:
        return self.name.upper()

    def beats(self, candidate: float, champion: float, margin: float) -> bool:
        """Whether `candidate` is better than `champion` by at least `margin` (in the
        metric's own units: AUC points, or the target's unit for an error)."""
        if self.greater_is_better:
            return candidate >= champion + margin
        return candidate <= champion - margin


# The version's metadata keys (its MLmodel file) of what travels with it.
CALIBRATION_KEY = "onebox_calibration"
THRESHOLD_KEY = "onebox_decision_threshold"
INTERVAL_KEY = "onebox_interval"


@dataclass(frozen=True)
class ServingFit:
    """What the train flow fits on the out-of-fold predictions of the rows it trains on
    (never the gate's holdout) and what travels with the version to everything that
    scores it: a binary model's calibration and decision threshold; a number's
    prediction interval (and the identity calibration, no threshold)."""

    calibration: Calibration = Calibration()
    threshold: float | None = None
    interval: Interval | None = None
    # What the fit measured, logged as the run's metrics.
    figures: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The version's metadata entries (read back by `from_metadata`)."""
        entries: dict[str, Any] = {CALIBRATION_KEY: self.calibration.to_json()}
        if self.threshold is not None:
            entries[THRESHOLD_KEY] = self.threshold
        if self.interval is not None:
            entries[INTERVAL_KEY] = self.interval.to_json()
        return entries

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], default_threshold: float | None
                      ) -> ServingFit:
        """What a version carries; a version from before one of them: the identity
        calibration, the task's default threshold, no interval."""
        raw_calibration = metadata.get(CALIBRATION_KEY)
        threshold = metadata.get(THRESHOLD_KEY, default_threshold)
        interval = metadata.get(INTERVAL_KEY)
        return cls(Calibration.from_json(raw_calibration) if raw_calibration
                   else Calibration(),
                   None if threshold is None else float(threshold),
                   None if interval is None else Interval.from_json(interval))


@dataclass(frozen=True)
class HoldoutFigures:
    """The candidate's figures on the gate's holdout: `metrics` go to MLflow as
    `holdout_<name>` (the gate's metric among them); `documents` are logged as JSON files
    beside them (a binary model's reliability table)."""

    metrics: dict[str, float]
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityLimits:
    """How poor live quality may get (settings QUALITY_MIN_AUC, QUALITY_MAX_ERROR_RATIO)."""

    min_auc: float
    max_error_ratio: float


@dataclass(frozen=True)
class EstimateLimits:
    """How far a label-free estimate may fall from the holdout's figure (settings
    ESTIMATED_AUC_MARGIN, and QUALITY_MAX_ERROR_RATIO as the live error is held to)."""

    auc_margin: float
    max_error_ratio: float


class OutcomeInvalid(ValueError):
    """A real outcome sent to /feedback that the target cannot have (the message is the
    problem, for the field named after the target)."""


class Task(ABC):
    """What differs between a binary and a regression target."""

    name: str
    # The pipeline's last step, by name (a model version's pipeline keeps it).
    estimator_step: str
    search_metric: Metric
    # What the gate compares on the holdout (and the monitoring holds the live figure to).
    gate_metric: Metric
    # The prediction log's column holding the served prediction.
    logged_prediction: str
    # The decision threshold of a version that carries none (binary versions from before
    # thresholds were chosen: 0.5; a number has none).
    default_threshold: float | None = None
    # What MLflow's pyfunc flavour calls on the pipeline (`mlflow models serve` answers it).
    pyfunc_predict_fn: str
    # Answer fields a version may lack (a number's interval, on a version trained before
    # intervals): documented, not required.
    optional_answers: tuple[str, ...] = ()

    def __init__(self, target: str, spec: TargetSpec):
        self.target = target
        self.spec = spec

    @abstractmethod
    def check_target(self, column: pd.Series, where: str) -> pd.Series:
        """The target column in its canonical dtype, or TargetInvalid naming `where` (the
        file), the field and what is supported."""

    @abstractmethod
    def estimator(self, params: dict[str, Any], seed: int) -> Any:
        """The XGBoost estimator with the search's `params`."""

    @abstractmethod
    def stratify(self, y: pd.Series) -> pd.Series | None:
        """What a train/validation split keeps in proportion (None: nothing)."""

    @abstractmethod
    def folds(self, seed: int, n_splits: int) -> Any:
        """The cross-fitting folds (a scikit-learn splitter)."""

    @abstractmethod
    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """What the search metric scores: the positive class's probability, or the number."""

    @abstractmethod
    def fit_serving(self, y: np.ndarray, out_of_fold: np.ndarray,
                    interval_level: float = DEFAULT_LEVEL) -> ServingFit:
        """What travels with the version, fitted on out-of-fold predictions (a number's
        interval at `interval_level`)."""

    @abstractmethod
    def holdout_figures(self, y: np.ndarray, raw: np.ndarray, fit: ServingFit
                        ) -> HoldoutFigures:
        """The figures of the raw holdout predictions served through `fit`."""

    @abstractmethod
    def answers(self, ids: Sequence[str], predictions: list[float], fit: ServingFit
                ) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
        """The answers to a request's records (JSON-ready dicts, in order) through what
        the version carries, and the prediction log's columns for them
        (core.store.PredictionBatch's keyword names)."""

    @property
    @abstractmethod
    def csv_answer_columns(self) -> tuple[str, ...]:
        """The columns a scored CSV file gets, after the file's own."""

    @abstractmethod
    def csv_cells(self, answer: dict[str, Any]) -> list[str]:
        """An answer's cells under csv_answer_columns."""

    @abstractmethod
    def outcome(self, value: Any) -> float:
        """A real outcome as sent to /feedback, as the log keeps it; OutcomeInvalid saying
        what the field must be."""

    @abstractmethod
    def answer_schema(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI (JSON Schema) properties an answer carries besides its id."""

    @abstractmethod
    def outcome_schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The OpenAPI schemas of the outcome as /feedback takes it and as it answers it."""

    @abstractmethod
    def answered_outcome(self, actual: float) -> Any:
        """A recorded outcome as /feedback answers it (the type the field was sent as)."""

    @property
    @abstractmethod
    def explanation_unit(self) -> str:
        """The unit of an explanation's base, contributions and score."""

    # How an explanation's score relates to the answer (the OpenAPI document says it).
    score_meaning: str

    # How a window's quality is estimated before its labels arrive: "cbpe" (a binary
    # model's calibrated probabilities, monitoring.cbpe) or "dle" (a number's error, from
    # models of the error fitted on out-of-fold rows, core.loss_estimation).
    @property
    @abstractmethod
    def label_free_method(self) -> str: ...

    def fit_loss_estimator(self, pipeline: Any, x: pd.DataFrame, y: np.ndarray,
                           out_of_fold: np.ndarray, seed: int) -> LossEstimator | None:
        """The models of the error that travel with the version (DLE), fitted on the
        out-of-fold rows `x` (encoded by `pipeline`'s preprocessing, as the monitoring
        encodes a window); None when the task estimates otherwise."""
        return None

    @abstractmethod
    def estimated_shortfall(self, estimated: dict[str, float | None],
                            reference: dict[str, float], limits: EstimateLimits) -> str | None:
        """Why the label-free estimate of a window is too poor against the version's
        holdout figures `reference` (the EstimatedQualityLow alert's condition), or None."""

    @abstractmethod
    def live_figures(self, labelled: pd.DataFrame) -> dict[str, float]:
        """Quality of the logged predictions on labelled rows of the prediction log
        (columns `actual` and the task's logged ones), by figure name."""

    @abstractmethod
    def shortfall(self, live: dict[str, float], reference: dict[str, float],
                  limits: QualityLimits) -> str | None:
        """Why the live figures are too poor to go on with (the monitoring's alarm and the
        drift-check flow's retraining), or None; `reference`: the version's holdout
        figures."""

    def live_limits(self, live: dict[str, float], reference: dict[str, float],
                    limits: QualityLimits) -> dict[str, float]:
        """The values the live figures may not pass for this window, by figure name, where
        they depend on the window (the exporter exports them as onebox_live_<name>_limit
        for the alert rules); a binary model's AUC limit is the setting itself."""
        return {}

    @abstractmethod
    def canonical(self, outcomes: pd.Series) -> pd.Series:
        """Outcomes from the prediction log (a float column) in the target's dtype."""

    @abstractmethod
    def describe(self, y: pd.Series) -> str:
        """A few words on a target column, for the flow's log ("16.1% positive")."""

    def _invalid(self, where: str, problem: str) -> TargetInvalid:
        return TargetInvalid(f"{where}: target {self.target!r} ({self.name}): {problem}; "
                             f"{SUPPORTED}")


class Binary(Task):
    name = "binary"
    estimator_step = "classifier"
    search_metric = Metric("auc", greater_is_better=True)
    gate_metric = search_metric
    logged_prediction = "probability"
    explanation_unit = "log-odds"
    score_meaning = "the probability is its logistic"
    default_threshold = 0.5
    pyfunc_predict_fn = "predict_proba"
    label_free_method = "cbpe"

    def estimated_shortfall(self, estimated: dict[str, float | None],
                            reference: dict[str, float], limits: EstimateLimits) -> str | None:
        auc, held_out = estimated.get("auc"), reference.get("auc")
        if auc is not None and held_out is not None and auc < held_out - limits.auc_margin:
            return (f"estimated AUC {auc:.3f} < the holdout's {held_out:.3f} - "
                    f"{limits.auc_margin:g}")
        return None

    def canonical(self, outcomes: pd.Series) -> pd.Series:
        return outcomes.astype(int)

    def live_figures(self, labelled: pd.DataFrame) -> dict[str, float]:
        from sklearn.metrics import precision_score, recall_score, roc_auc_score

        actual = labelled["actual"].astype(int).to_numpy()
        decision = labelled["decision"].astype(int).to_numpy()
        figures = {
            "precision": float(precision_score(actual, decision, zero_division=0)),
            "recall": float(recall_score(actual, decision, zero_division=0)),
            "error_rate": float((actual != decision).mean())}
        if len(np.unique(actual)) == 2:  # an AUC needs both outcomes
            figures["auc"] = float(roc_auc_score(
                actual, labelled["probability"].astype(float).to_numpy()))
        return figures

    def shortfall(self, live: dict[str, float], reference: dict[str, float],
                  limits: QualityLimits) -> str | None:
        auc = live.get("auc")
        if auc is not None and auc < limits.min_auc:
            return f"live AUC {auc:.3f} < {limits.min_auc}"
        return None

    def describe(self, y: pd.Series) -> str:
        return f"{100 * float(y.mean()):.1f}% positive"

    def check_target(self, column: pd.Series, where: str) -> pd.Series:
        present = column.dropna()
        if len(present) < len(column):
            raise self._invalid(where, _rows(len(column) - len(present), "no value"))
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.isna().any():
            text = sorted(map(str, present[numbers.isna()].unique()))[:5]
            raise self._invalid(where, f"text values {text}: a binary target is 0 or 1 "
                                "(map the classes to 0 and 1 before training)")
        values = sorted(numbers.unique().tolist())
        if len(values) > 2:
            raise self._invalid(where, f"{len(values)} distinct values (first {values[:5]}): "
                                "several classes are not supported")
        if not set(values) <= {0, 1}:
            raise self._invalid(where, f"values {values}: a binary target is 0 or 1")
        if len(values) < 2:
            raise self._invalid(where, f"every row is {values[0]:g}: a model needs rows of "
                                "both 0 and 1")
        return numbers.astype(int)

    def estimator(self, params: dict[str, Any], seed: int) -> Any:
        from xgboost import XGBClassifier

        return XGBClassifier(tree_method="hist", n_jobs=2, random_state=seed,
                             eval_metric="auc", **params)

    def stratify(self, y: pd.Series) -> pd.Series:
        return y

    def folds(self, seed: int, n_splits: int) -> Any:
        from sklearn.model_selection import StratifiedKFold

        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(x)[:, 1]

    def fit_serving(self, y: np.ndarray, out_of_fold: np.ndarray,
                    interval_level: float = DEFAULT_LEVEL) -> ServingFit:
        # Platt scaling and the outcome curve, then the threshold on the calibrated scores:
        # sklearn's CalibratedClassifierCV(ensemble=False) fits on out-of-fold scores too.
        platt = fit_platt(y, out_of_fold)
        calibrated = platt.apply(out_of_fold)
        calibration = platt.with_outcome_curve(y, calibrated)
        threshold = best_f1_threshold(y, calibrated)
        return ServingFit(calibration, threshold, figures={
            "threshold": threshold, "calibration_slope": calibration.slope,
            "calibration_intercept": calibration.intercept})

    def holdout_figures(self, y: np.ndarray, raw: np.ndarray, fit: ServingFit
                        ) -> HoldoutFigures:
        from sklearn.metrics import f1_score, roc_auc_score

        served = fit.calibration.apply(raw)
        decision = served >= fit.threshold
        metrics = {
            "auc": float(roc_auc_score(y, served)),
            "f1": float(f1_score(y, decision, zero_division=0)),
            "positive_rate": float(decision.mean()),
            "ece": expected_calibration_error(y, served),
            "ece_uncalibrated": expected_calibration_error(y, raw)}
        reliability = {
            "bins": "equal-count", "rows": len(y),
            "calibrated": [asdict(b) for b in reliability_bins(y, served)],
            "uncalibrated": [asdict(b) for b in reliability_bins(y, raw)]}
        return HoldoutFigures(metrics, {"calibration.json": {
            "calibration": asdict(fit.calibration), "holdout_reliability": reliability}})

    def answers(self, ids: Sequence[str], predictions: list[float], fit: ServingFit
                ) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
        cut = 0.5 if fit.threshold is None else fit.threshold
        decisions = [p >= cut for p in predictions]
        probability, target = f"{self.target}_probability", self.target
        answers = [{"prediction_id": i, probability: p, target: d}
                   for i, p, d in zip(ids, predictions, decisions, strict=True)]
        return answers, {"probabilities": predictions,
                         "decisions": [int(d) for d in decisions]}

    @property
    def csv_answer_columns(self) -> tuple[str, ...]:
        return ("prediction_id", f"{self.target}_probability", f"{self.target}_predicted")

    def csv_cells(self, answer: dict[str, Any]) -> list[str]:
        return [answer["prediction_id"], f"{answer[f'{self.target}_probability']:.6f}",
                str(int(answer[self.target]))]

    def outcome(self, value: Any) -> float:
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, int) and value in (0, 1):
            return float(value)
        raise OutcomeInvalid("must be 0 or 1 (or false/true)")

    def answered_outcome(self, actual: float) -> int:
        return int(actual)

    def answer_schema(self) -> dict[str, dict[str, Any]]:
        probability = f"{self.target}_probability"
        return {probability: {"type": "number", "minimum": 0, "maximum": 1},
                self.target: {"type": "boolean",
                              "description": f"{probability} >= the model's threshold."}}

    def outcome_schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({"oneOf": [{"type": "integer", "enum": [0, 1]}, {"type": "boolean"}],
                 "description": "The real outcome: 1 (or true) for the positive class."},
                {"type": "integer", "enum": [0, 1]})


def best_f1_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The decision threshold with the best F1 on these labels (a grid of 0.05..0.95)."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    scores = [f1_score(y_true, proba >= t, zero_division=0) for t in grid]
    return float(grid[int(np.argmax(scores))])


class Regression(Task):
    name = "regression"
    estimator_step = "regressor"
    logged_prediction = "value"
    score_meaning = "the score is the prediction itself"
    pyfunc_predict_fn = "predict"
    optional_answers = ("interval",)
    label_free_method = "dle"

    def fit_loss_estimator(self, pipeline: Any, x: pd.DataFrame, y: np.ndarray,
                           out_of_fold: np.ndarray, seed: int) -> LossEstimator:
        return LossEstimator.fit(pipeline[:-1].transform(x), predicted=out_of_fold, actual=y,
                                 seed=seed)

    def estimated_shortfall(self, estimated: dict[str, float | None],
                            reference: dict[str, float], limits: EstimateLimits) -> str | None:
        # As LiveErrorHigh reads the live error: either figure past the ratio.
        return _errors_past_ratio("estimated", estimated, reference, limits.max_error_ratio)

    def canonical(self, outcomes: pd.Series) -> pd.Series:
        return outcomes.astype(float)

    def live_figures(self, labelled: pd.DataFrame) -> dict[str, float]:
        actual = labelled["actual"].astype(float).to_numpy()
        predicted = labelled["value"].astype(float).to_numpy()
        metrics = regression_metrics(actual, predicted)
        figures = {name: metrics[name] for name in ("rmse", "mae")}
        figures |= error_standard_errors(actual, predicted)
        if "interval_low" in labelled:  # rows answered without one (older versions) aside
            low = labelled["interval_low"].astype(float).to_numpy()
            high = labelled["interval_high"].astype(float).to_numpy()
            answered = ~np.isnan(low) & ~np.isnan(high)
            if answered.any():
                inside = (actual >= low) & (actual <= high)
                figures["interval_coverage"] = float(inside[answered].mean())
        return figures

    def live_limits(self, live: dict[str, float], reference: dict[str, float],
                    limits: QualityLimits) -> dict[str, float]:
        return live_error_limits(live, reference, limits.max_error_ratio)

    def shortfall(self, live: dict[str, float], reference: dict[str, float],
                  limits: QualityLimits) -> str | None:
        # Either error past its limit, as the LiveErrorHigh alert reads it: a model gated
        # on MAE whose RMSE doubles (a few large misses) is worth a look too.
        reasons = []
        ratio = limits.max_error_ratio
        for name, limit in self.live_limits(live, reference, limits).items():
            if live[name] > limit:
                why = (f"{ratio:g} x the holdout's {reference[name]:.4g}"
                       if limit <= ratio * reference[name] else
                       f"the holdout's {reference[name]:.4g} + "
                       f"{LIVE_ERROR_STANDARD_ERRORS:g} standard errors")
                reasons.append(f"live {name.upper()} {live[name]:.4g} > its limit {limit:.4g} "
                               f"({why})")
        return "; ".join(reasons) or None

    def describe(self, y: pd.Series) -> str:
        unit = f" {self.spec.unit}" if self.spec.unit else ""
        return (f"{self.target} mean {float(y.mean()):.4g}{unit} "
                f"(from {float(y.min()):.4g} to {float(y.max()):.4g})")

    # XGBoost's objective for each search metric: the loss the trees fit is the error
    # the search judges them on.
    OBJECTIVES = {"rmse": "reg:squarederror", "mae": "reg:absoluteerror"}

    def __init__(self, target: str, spec: TargetSpec):
        super().__init__(target, spec)
        self.search_metric = Metric(spec.metric or "rmse", greater_is_better=False)
        self.gate_metric = self.search_metric

    @property
    def explanation_unit(self) -> str:
        return self.spec.unit or self.target

    def check_target(self, column: pd.Series, where: str) -> pd.Series:
        present = column.dropna()
        if len(present) < len(column):
            raise self._invalid(where, _rows(len(column) - len(present), "no value"))
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.isna().any():
            bad = present[numbers.isna()]
            raise self._invalid(where, f"not a number: {str(bad.iloc[0])!r} (line "
                                f"{bad.index[0] + 2} of the file, after its header); a "
                                "regression target is numeric")
        numbers = numbers.astype(float)
        if not np.isfinite(numbers).all():
            raise self._invalid(where, "infinite values; a regression target is finite")
        if numbers.nunique() < 2:
            raise self._invalid(where, f"every row is {numbers.iloc[0]:g}: there is nothing "
                                "to predict")
        for bound, outside, word in ((self.spec.min, numbers < (self.spec.min or 0), "below"),
                                     (self.spec.max, numbers > (self.spec.max or 0), "above")):
            if bound is not None and outside.any():
                raise self._invalid(where, f"{_rows(int(outside.sum()), word)} the declared "
                                    f"{'min' if word == 'below' else 'max'} {bound:g} "
                                    f"(first: {numbers[outside].iloc[0]:g})")
        return numbers

    def estimator(self, params: dict[str, Any], seed: int) -> Any:
        from xgboost import XGBRegressor

        return XGBRegressor(tree_method="hist", n_jobs=2, random_state=seed,
                            objective=self.OBJECTIVES[self.search_metric.name],
                            eval_metric=self.search_metric.name, **params)

    def stratify(self, y: pd.Series) -> None:
        return None  # a continuous target has no classes to keep in proportion

    def folds(self, seed: int, n_splits: int) -> Any:
        from sklearn.model_selection import KFold

        return KFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict(x)

    def fit_serving(self, y: np.ndarray, out_of_fold: np.ndarray,
                    interval_level: float = DEFAULT_LEVEL) -> ServingFit:
        # The number is served as the model gives it, with its conformal interval.
        interval, widths = fit_interval(y, out_of_fold, interval_level,
                                        floor=self.spec.min, ceiling=self.spec.max)
        return ServingFit(interval=interval, figures={
            "interval_level": interval.level, "interval_scaled": float(bool(interval.scale)),
            **{f"interval_oof_{name}": width for name, width in widths.items()}})

    def holdout_figures(self, y: np.ndarray, raw: np.ndarray, fit: ServingFit
                        ) -> HoldoutFigures:
        y, predicted = np.asarray(y, float), np.asarray(raw, float)
        metrics = regression_metrics(y, predicted) | error_standard_errors(y, predicted)
        for name, (low, high) in bootstrap_intervals(y, predicted).items():
            metrics[f"{name}_low"], metrics[f"{name}_high"] = low, high
        if fit.interval is not None:
            coverage, width = fit.interval.coverage_and_width(y, predicted)
            metrics |= {"interval_coverage": coverage, "interval_width": width,
                        "interval_level": fit.interval.level}
        return HoldoutFigures(metrics)

    def answers(self, ids: Sequence[str], predictions: list[float], fit: ServingFit
                ) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
        target = self.target
        answers = [{"prediction_id": i, target: v} for i, v in zip(ids, predictions,
                                                                  strict=True)]
        if fit.interval is None:  # a version trained before intervals
            return answers, {"values": predictions}
        lows, highs = (bound.tolist() for bound in fit.interval.bounds(np.array(predictions)))
        level = fit.interval.level
        for answer, low, high in zip(answers, lows, highs, strict=True):
            answer["interval"] = {"low": low, "high": high, "level": level}
        return answers, {"values": predictions, "interval_lows": lows, "interval_highs": highs}

    @property
    def csv_answer_columns(self) -> tuple[str, ...]:
        return ("prediction_id", f"{self.target}_predicted", f"{self.target}_low",
                f"{self.target}_high")

    def csv_cells(self, answer: dict[str, Any]) -> list[str]:
        interval = answer.get("interval")
        bounds = ([repr(float(interval["low"])), repr(float(interval["high"]))] if interval
                  else ["", ""])
        return [answer["prediction_id"], repr(float(answer[self.target])), *bounds]

    def outcome(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OutcomeInvalid(f"must be a number{self._range_words()}")
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits: JSON allows it
            raise OutcomeInvalid(f"must be a finite number{self._range_words()}") from None
        if not math.isfinite(number):
            raise OutcomeInvalid(f"must be a finite number{self._range_words()}")
        if ((self.spec.min is not None and number < self.spec.min)
                or (self.spec.max is not None and number > self.spec.max)):
            raise OutcomeInvalid(f"{number:g} is outside the target's range"
                                 f"{self._range_words()}")
        return number

    def answered_outcome(self, actual: float) -> float:
        return actual

    def _number_schema(self) -> dict[str, Any]:
        number: dict[str, Any] = {"type": "number"}
        if self.spec.min is not None:
            number["minimum"] = self.spec.min
        if self.spec.max is not None:
            number["maximum"] = self.spec.max
        return number

    def answer_schema(self) -> dict[str, dict[str, Any]]:
        unit = f" in {self.spec.unit}" if self.spec.unit else ""
        # The model's number is not clipped to the declared range: a tree ensemble stays
        # inside its training targets' range anyway, and a clipped answer would hide it.
        return {self.target: {"type": "number",
                              "description": f"The predicted {self.target}{unit}."},
                "interval": {
                    "type": "object", "required": ["low", "high", "level"],
                    "description": f"Where the real {self.target} lies with probability "
                                   "`level` (conformal on out-of-fold residuals, clipped to "
                                   "the target's range; absent on a version trained before "
                                   "intervals).",
                    "properties": {"low": {"type": "number"}, "high": {"type": "number"},
                                   "level": {"type": "number", "exclusiveMinimum": 0,
                                             "exclusiveMaximum": 1}}}}

    def outcome_schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        unit = f" in {self.spec.unit}" if self.spec.unit else ""
        return ({**self._number_schema(),
                 "description": f"The real {self.target}{unit}."}, self._number_schema())

    def _range_words(self) -> str:
        low, high = self.spec.min, self.spec.max
        unit = f" {self.spec.unit}" if self.spec.unit else ""
        if low is not None and high is not None:
            return f" from {low:g} to {high:g}{unit}"
        if low is not None:
            return f" of at least {low:g}{unit}"
        if high is not None:
            return f" of at most {high:g}{unit}"
        return f" (in{unit})" if unit else ""


def _errors_past_ratio(kind: str, errors: dict[str, float | None],
                       reference: dict[str, float], ratio: float) -> str | None:
    """Each of the RMSE and MAE (`kind`: live, or estimated) above `ratio` times the
    holdout's, said; None when neither is."""
    reasons = []
    for name in ("rmse", "mae"):
        error, held_out = errors.get(name), reference.get(name)
        if error is not None and held_out is not None and error > ratio * held_out:
            reasons.append(f"{kind} {name.upper()} {error:.4g} > {ratio:g} x the holdout's "
                           f"{held_out:.4g}")
    return "; ".join(reasons) or None


# LiveErrorHigh: a window's error past QUALITY_MAX_ERROR_RATIO times the holdout's (how
# much worse matters) and past the holdout's by more than this many standard errors of the
# difference (both samples' sampling error: not chance), as IntervalCoverageLow allows
# three binomial ones.  A window whose error is the holdout population's raises it in at
# most ~0.13% of windows per figure (the one-sided normal tail: a CLT approximation, which
# heavy-tailed errors make rougher; `make bench-false-alarms DEMO=flights` measures it).
# The bare ratio kept no rate: a holdout whose RMSE came out 10% low by chance made clean
# 1,000-fare windows cross 1.25 x it in 1.5% of windows.
LIVE_ERROR_STANDARD_ERRORS = 3.0
# Each figure's sampling error, as the standard error of the mean of its per-row terms.
_STANDARD_ERRORS = {"rmse": "mse_standard_error", "mae": "mae_standard_error"}


def live_error_limits(live: dict[str, float], reference: dict[str, float],
                      ratio: float) -> dict[str, float]:
    """The RMSE and MAE a window may reach before LiveErrorHigh: the larger of the
    holdout's times `ratio` and the holdout's plus LIVE_ERROR_STANDARD_ERRORS standard
    errors of the difference between the window's and the holdout's (on the mean squared
    error for the RMSE, on the mean absolute error for the MAE).  A version from before
    the holdout's standard errors were kept is held to the bare ratio."""
    limits = {}
    for name, standard_error in _STANDARD_ERRORS.items():
        held_out = reference.get(name)
        if live.get(name) is None or held_out is None:
            continue
        limits[name] = ratio * held_out
        live_se, held_out_se = live.get(standard_error), reference.get(standard_error)
        if live_se is not None and held_out_se is not None:
            # The RMSE's test is on its square, the mean squared error: a mean of rows.
            power = 2 if name == "rmse" else 1
            chance = held_out ** power + LIVE_ERROR_STANDARD_ERRORS * math.hypot(
                live_se, held_out_se)
            limits[name] = max(limits[name], chance ** (1 / power))
    return limits


def error_standard_errors(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The standard errors of the mean squared and the mean absolute error over the rows:
    how far another sample's figure would fall from these (what LiveErrorHigh allows)."""
    error = np.asarray(predicted, float) - np.asarray(y, float)
    if error.size < 2:
        return {}
    root = math.sqrt(error.size)
    return {"mse_standard_error": float(np.std(error ** 2, ddof=1)) / root,
            "mae_standard_error": float(np.std(np.abs(error), ddof=1)) / root}


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² of `predicted` against `y`."""
    error = predicted - y
    total = float(((y - y.mean()) ** 2).sum())
    return {"rmse": float(np.sqrt((error ** 2).mean())), "mae": float(np.abs(error).mean()),
            "r2": 1.0 - float((error ** 2).sum()) / total if total > 0 else float("nan")}


def bootstrap_intervals(y: np.ndarray, predicted: np.ndarray) -> dict[str, tuple[float, float]]:
    """95% percentile bootstrap intervals of RMSE, MAE and R² over the rows (core.bootstrap:
    the model card shows the same)."""
    return bootstrap.intervals(("rmse", "mae", "r2"), y, predicted)


def _rows(count: int, what: str) -> str:
    """"1 row has no value", "3 rows have no value"; "1 row above", "3 rows above"."""
    rows = "1 row" if count == 1 else f"{count} rows"
    if what == "no value":
        return f"{rows} {'has' if count == 1 else 'have'} no value"
    return f"{rows} {what}"


TASKS: dict[str, type[Task]] = {"binary": Binary, "regression": Regression}


def task_of(schema: Schema) -> Task:
    """The schema's task: the one place that reads its name."""
    return TASKS[schema.task](schema.target, schema.target_spec)
