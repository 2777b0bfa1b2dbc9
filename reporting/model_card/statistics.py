"""The model card's figures, computed from the holdout predictions (no HTML here).

Intervals are core.bootstrap's (the same resamples and seed as the figures the train flow
logs on the run), paired between the candidate and the champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core import contributions
from core.bootstrap import (
    CONFIDENCE,
    RESAMPLES,
    SEED,
    WEIGHTED,
    percentile_interval,
    resampled,
    weighted_auc,
)
from core.schema import Schema, model_frame
from core.task import Metric

BOOTSTRAP_RESAMPLES = RESAMPLES
BOOTSTRAP_SEED = SEED
CALIBRATION_BINS = 10
# TreeSHAP costs grow with rows x trees (~0.7 ms a row for 350 trees of depth 5 here);
# past this many holdout rows a seeded sample of them gives the same ranking for less.
SHAP_MAX_ROWS = 1_000
# A feature with at most this many distinct values is segmented by value; one with more,
# by quartile.
SEGMENT_BY_VALUE_MAX = 10
# The segment of a text feature's less frequent values.
OTHER_VALUES = "(other values)"


def rank_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The AUC of `scores` (equal to sklearn's roc_auc_score)."""
    return float(weighted_auc(y_true, scores, np.ones((1, len(scores))))[0])


def bootstrap_scores(metric: Metric, y_true: np.ndarray, *predictions: np.ndarray,
                     resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`metric` of each prediction vector over the same resamples (paired)."""
    return resampled(metric.name, y_true, *predictions, resamples=resamples, seed=seed)


def bootstrap_aucs(y_true: np.ndarray, *scores: np.ndarray, resamples: int = RESAMPLES,
                   seed: int = SEED) -> np.ndarray:
    """AUCs of each score vector over the same bootstrap resamples of the rows."""
    return resampled("auc", y_true, *scores, resamples=resamples, seed=seed)


def auc_confidence_interval(y_true: np.ndarray, scores: np.ndarray, *,
                            resamples: int = RESAMPLES, seed: int = SEED,
                            confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A percentile bootstrap interval of the AUC over the rows (holdout rows resampled
    with replacement)."""
    [aucs] = bootstrap_aucs(y_true, scores, resamples=resamples, seed=seed)
    return percentile_interval(aucs, confidence)


def auc_difference_interval(y_true: np.ndarray, scores: np.ndarray, baseline: np.ndarray, *,
                            resamples: int = RESAMPLES, seed: int = SEED,
                            confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A paired bootstrap interval of AUC(scores) - AUC(baseline) on the same rows."""
    aucs = bootstrap_aucs(y_true, scores, baseline, resamples=resamples, seed=seed)
    return percentile_interval(aucs[0] - aucs[1], confidence)


@dataclass(frozen=True)
class GateEvidence:
    """The gate's metric for the candidate and, when there was one, the champion, on the
    same holdout, with intervals; the difference is candidate − champion."""

    metric: Metric
    candidate: float
    candidate_ci: tuple[float, float]
    champion_ci: tuple[float, float] | None = None
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None


def _score(metric: Metric, y_true: np.ndarray, predicted: np.ndarray) -> float:
    """`metric` on every row once (the bootstrap's own formula: an AUC of one class is
    NaN, not an exception)."""
    return float(WEIGHTED[metric.name](y_true, predicted, np.ones((1, len(predicted))))[0])


def gate_evidence(metric: Metric, y_true: np.ndarray, candidate: np.ndarray,
                  champion: np.ndarray | None) -> GateEvidence:
    candidate = np.asarray(candidate, dtype=np.float64)
    if champion is None:
        [scores] = bootstrap_scores(metric, y_true, candidate)
        return GateEvidence(metric, _score(metric, y_true, candidate),
                            percentile_interval(scores))
    champion = np.asarray(champion, dtype=np.float64)
    candidate_scores, champion_scores = bootstrap_scores(metric, y_true, candidate, champion)
    return GateEvidence(
        metric, _score(metric, y_true, candidate), percentile_interval(candidate_scores),
        champion_ci=percentile_interval(champion_scores),
        difference=_score(metric, y_true, candidate) - _score(metric, y_true, champion),
        difference_ci=percentile_interval(candidate_scores - champion_scores))


# --- a binary model's holdout --------------------------------------------------------


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    rows: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(y_true: np.ndarray, proba: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> list[CalibrationBin]:
    """Equal-width probability bins that hold rows: the mean prediction against the
    observed positive rate in each."""
    y_true, proba = np.asarray(y_true, dtype=np.float64), np.asarray(proba, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        if members.any():
            out.append(CalibrationBin(float(edges[b]), float(edges[b + 1]), int(members.sum()),
                                      float(proba[members].mean()),
                                      float(y_true[members].mean())))
    return out


@dataclass(frozen=True)
class Confusion:
    threshold: float
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int

    @property
    def rows(self) -> int:
        return (self.true_positive + self.false_positive + self.false_negative
                + self.true_negative)

    @property
    def precision(self) -> float | None:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        positives = self.true_positive + self.false_negative
        return self.true_positive / positives if positives else None

    @property
    def false_positive_rate(self) -> float | None:
        negatives = self.false_positive + self.true_negative
        return self.false_positive / negatives if negatives else None

    @property
    def f1(self) -> float | None:
        """The harmonic mean of precision and recall: 2 TP / (2 TP + FP + FN)."""
        counted = 2 * self.true_positive + self.false_positive + self.false_negative
        return 2 * self.true_positive / counted if counted else None


def confusion_at(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> Confusion:
    """Counts at the decision threshold, as the predictor decides (positive at >=)."""
    actual = np.asarray(y_true).astype(bool)
    flagged = np.asarray(proba) >= threshold
    return Confusion(threshold, int((flagged & actual).sum()), int((flagged & ~actual).sum()),
                     int((~flagged & actual).sum()), int((~flagged & ~actual).sum()))


@dataclass(frozen=True)
class Curves:
    """A binary model's ROC and precision-recall curves on the holdout, each thinned to
    at most CURVE_MAX_POINTS points for drawing; the areas are computed on every row."""

    roc: list[tuple[float, float]]        # (false positive rate, true positive rate)
    auc: float                            # the area under the ROC curve
    pr: list[tuple[float, float]]         # (recall, precision), drawn as steps
    average_precision: float              # the area under the precision-recall steps
    positive_rate: float                  # a model without skill's precision


# A curve drawn with more points than this is thinned (evenly, its ends kept): a holdout
# of 20,000 rows has thousands of corners no screen shows.
CURVE_MAX_POINTS = 400


def _thinned(points: list[tuple[float, float]],
             most: int = CURVE_MAX_POINTS) -> list[tuple[float, float]]:
    if len(points) <= most:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, most).round().astype(int))
    return [points[i] for i in keep]


def holdout_curves(y_true: np.ndarray, proba: np.ndarray) -> Curves | None:
    """The ROC and precision-recall curves of `proba` (None: the holdout holds one class,
    which has neither)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    y = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, proba)
    precision, recall, _ = precision_recall_curve(y, proba)
    # sklearn's order: recall falling from 1 to 0.  Average precision is the sum of
    # (recall_i - recall_i+1) * precision_i: each precision held over the recall it adds,
    # a staircase (sklearn's PrecisionRecallDisplay draws it so: steps-post).
    corners = _thinned(list(zip(recall.tolist(), precision.tolist(), strict=True)),
                       CURVE_MAX_POINTS // 2)
    steps: list[tuple[float, float]] = []
    for i, (r, p) in enumerate(corners):
        if i:
            steps.append((r, corners[i - 1][1]))
        steps.append((r, p))
    # sklearn ends the curve at (recall 0, precision 1), a point of no area and no
    # threshold: drawn, it is a spike to the top at recall 0.
    if len(steps) > 2 and steps[-1] == (0.0, 1.0):
        steps.pop()
    return Curves(roc=_thinned([(float(x), float(t)) for x, t in zip(fpr, tpr, strict=True)]),
                  auc=rank_auc(y, proba),
                  pr=steps,
                  average_precision=float(average_precision_score(y, proba)),
                  positive_rate=float(y.mean()))


# --- a number's holdout --------------------------------------------------------------


@dataclass(frozen=True)
class ResidualSegment:
    """The holdout rows of one feature's value (or quartile): how far off they were.
    A residual is predicted − actual: a positive mean over-predicts."""

    feature: str
    segment: str
    rows: int
    mean_actual: float
    mean_residual: float
    rmse: float


def residuals_by_segment(frame: pd.DataFrame, actual: np.ndarray, predicted: np.ndarray,
                         features: list[str]) -> list[ResidualSegment]:
    """Per feature in `features`, one segment per value (a feature of at most
    SEGMENT_BY_VALUE_MAX values) or per quartile, missing values in a segment of their
    own."""
    residual = pd.Series(np.asarray(predicted, np.float64) - np.asarray(actual, np.float64),
                         index=frame.index)
    truth = pd.Series(np.asarray(actual, np.float64), index=frame.index)
    out = []
    for name in features:
        column = frame[name]
        if column.nunique(dropna=True) <= SEGMENT_BY_VALUE_MAX:
            groups = column.astype("string").fillna("missing")
            keys = sorted(groups.unique(), key=_natural)
        elif not pd.api.types.is_numeric_dtype(column):
            # Text of many values: the most frequent ones, the rest as one segment.
            top = column.value_counts().index[:SEGMENT_BY_VALUE_MAX - 1].astype(str)
            groups = column.astype("string").fillna("missing")
            groups = groups.where(groups.isin(top) | (groups == "missing"), OTHER_VALUES)
            keys = [*top, *(k for k in (OTHER_VALUES, "missing") if (groups == k).any())]
        else:
            bins = pd.qcut(column.astype(float), 4, duplicates="drop")
            groups = bins.astype("string").fillna("missing")
            keys = [str(b) for b in bins.cat.categories if (groups == str(b)).any()]
            keys += ["missing"] if (groups == "missing").any() else []
        for key in keys:
            members = (groups == key).to_numpy()
            errors = residual[members].to_numpy()
            out.append(ResidualSegment(name, key, int(members.sum()),
                                       float(truth[members].mean()), float(errors.mean()),
                                       float(np.sqrt((errors ** 2).mean()))))
    return out


def _natural(text: str) -> tuple[int, float, str]:
    """Numbers in order of value, then words."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


# --- what the model leans on ---------------------------------------------------------


def _column_owners(preprocessing: Any) -> list[str]:
    """The schema feature behind each column the fitted ColumnTransformer outputs (a
    one-hot encoded feature owns one column per category)."""
    owners: list[str] = [""] * sum(s.stop - s.start
                                   for s in preprocessing.output_indices_.values())
    for name, transformer, columns in preprocessing.transformers_:
        span = preprocessing.output_indices_[name]
        if span.stop == span.start:
            continue  # a dropped remainder
        if hasattr(transformer, "categories_"):
            dropped = getattr(transformer, "drop_idx_", None)
            named = [column for i, (column, categories) in
                     enumerate(zip(columns, transformer.categories_, strict=True))
                     for _ in range(len(categories) - (0 if dropped is None
                                                       or dropped[i] is None else 1))]
        else:
            named = list(columns)
        if len(named) != span.stop - span.start:
            raise ValueError(f"cannot map the {name!r} columns back to features")
        owners[span] = named
    return owners


def feature_importance(pipeline: Any, schema: Schema, frame: pd.DataFrame,
                       estimator_step: str,
                       seed: int = BOOTSTRAP_SEED) -> list[tuple[str, float]]:
    """Mean |TreeSHAP contribution| of each schema feature on `frame`, largest first,
    from XGBoost's own `pred_contribs` (no shap package needed), in the model's margin:
    log-odds for a classifier, the target's unit for a regressor.

    A one-hot encoded feature's columns are summed per row before the absolute value:
    SHAP values add up, so that sum is the feature's contribution to that prediction.
    """
    if len(frame) > SHAP_MAX_ROWS:
        frame = frame.sample(n=SHAP_MAX_ROWS, random_state=seed)
    preprocessing = pipeline.named_steps["preprocessing"]
    estimator = pipeline.named_steps[estimator_step]
    encoded = np.asarray(preprocessing.transform(model_frame(schema, frame)), dtype=np.float64)
    _, per_feature = contributions.by_feature(estimator.get_booster(), encoded,
                                              _column_owners(preprocessing),
                                              schema.feature_names)
    mean_abs = np.abs(per_feature).mean(axis=0)
    ranked = sorted(zip(schema.feature_names, mean_abs.tolist(), strict=True),
                    key=lambda item: -item[1])
    return [(str(name), float(value)) for name, value in ranked]
