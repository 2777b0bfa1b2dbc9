"""Drift of a window of logged predictions against the champion's reference sample,
and the alarm: one yes/no that the exporter, the drift check and the reports share.

Evidently's defaults do not tell the truth here (STACK-NOTES): its dataset flag
(half the columns drifted) misses every realistic drift, and its per-column
defaults (with a reference over 1,000 rows: normed Wasserstein / Jensen-Shannon
at 0.1 whatever the window) flag some column in many clean 300-row windows.
So every p-value and every decision is computed here, once, and one budget of
false alarms is shared by all the tests (`python -m benchmarks.fidelity`
measures both, and the alternatives); Evidently only draws the HTML report of
those same results (`compute_drift(..., report=True)`; its tests are registered
to show the p-values computed here, never to test again):

- numeric features and the predicted probability: Mann-Whitney U (two-sided)
  and two-sample K-S, the smaller p-value doubled (Bonferroni over the two).
  Mann-Whitney is the most powerful rank test against a shift (prices up,
  customers older), the kind of drift met most; K-S catches a change of shape
  that keeps the median.  (Evidently's own `mannw` is one-sided: it misses a
  feature that goes down.)
- categorical features: a two-sample chi-square test on the contingency table,
  categories expected fewer than 5 times in the window pooled into one.  The
  reference is a sample too (Evidently's `chisquare` takes it as the truth and
  over-alarms on big windows), and rare categories (0.2% platinum cards) make
  the chi-square approximation false-alarm unless pooled.  An unseen category
  falls in the pool, so a new category is still caught.
- numeric features the others explain well (R^2 >= 0.2 in the reference): the
  same test again on the residual of a least-squares fit on the other features
  ("credit_limit | others", see ConditionalModel), reported as a drifted
  relation.  A 20% rise in credit limits alone was caught in 2 of 3 300-row
  windows by its own test and in every window by the residual's.
- all the features together (JOINT_COLUMN, see classifier_test): a small
  gradient-boosted classifier trained on half of the window and half of the
  reference to tell them apart, its AUC on the other halves tested against the
  exact Mann-Whitney null.  It sees what no test of one column and no linear
  fit can: a new segment inside the existing ranges (young customers with zero
  balances, many products and high limits, each column's distribution
  unchanged), a relation that changes shape (limits following income for
  established customers only).  Reported as a drifted relation too.
- Bonferroni over the tests the decision counts: a column drifts when its
  p-value is below `false_alarm_rate / (number of columns counted)`, so a
  window of clean traffic raises the alarm with probability at most
  `false_alarm_rate`.

The data-drift decision is "at least one feature or relation drifted (and at
least `share_threshold` of the features' count)", and, with `prediction_alarm`
(PREDICTION_DRIFT_ALARM, on by default), "or the predicted probability drifted".
The reference's predictions are out-of-sample scores (the train flow scores the
gate's holdout rows of the reference with the served model, which did not train on
them, as new customers are scored, and leaves the other rows' empty: nulls are
ignored), so clean traffic does not alarm on them; a version whose reference was
scored in-sample (more extreme than any new customer's: an overfit model gave
p ~ 1e-5 on every clean 1,000-row window) must not count them, and its callers
switch the prediction off for it (monitoring.window).  A concept
change (same inputs, another relation to churn) cannot show in input drift, nor
in the predictions, which only depend on the inputs: it shows in live quality,
so the alarm also rises when the live AUC of the window's labelled predictions
falls below `min_auc` once `min_labels` labels have arrived.
"""

from __future__ import annotations

import functools
import math
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.registry import PREDICTION_COLUMN
from core.schema import Schema
from core.settings import (
    DEFAULT_DRIFT_FALSE_ALARM_RATE,
    DEFAULT_DRIFT_SHARE_THRESHOLD,
    DEFAULT_PREDICTION_DRIFT_ALARM,
    DEFAULT_QUALITY_MAX_ERROR_RATIO,
    DEFAULT_QUALITY_MIN_AUC,
    DEFAULT_QUALITY_MIN_LABELS,
)
from core.task import QualityLimits

if TYPE_CHECKING:
    from core.settings import Settings
    from core.task import Task
    from monitoring.quality import LiveQuality

NUMERIC_TEST = "onebox_mw_ks"
CATEGORICAL_TEST = "onebox_chi2_pooled"
JOINT_TEST = "onebox_c2st"
# Cochran's rule for the chi-square approximation: every expected count at least 5.
MIN_EXPECTED_COUNT = 5.0


@dataclass(frozen=True)
class DriftPolicy:
    """When a window counts as drifted; defaults are the settings' defaults."""

    false_alarm_rate: float = DEFAULT_DRIFT_FALSE_ALARM_RATE
    share_threshold: float = DEFAULT_DRIFT_SHARE_THRESHOLD
    prediction_alarm: bool = DEFAULT_PREDICTION_DRIFT_ALARM
    min_auc: float = DEFAULT_QUALITY_MIN_AUC
    min_labels: int = DEFAULT_QUALITY_MIN_LABELS
    max_error_ratio: float = DEFAULT_QUALITY_MAX_ERROR_RATIO

    @property
    def quality_limits(self) -> QualityLimits:
        return QualityLimits(min_auc=self.min_auc, max_error_ratio=self.max_error_ratio)

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftPolicy:
        return cls(false_alarm_rate=settings.drift_false_alarm_rate,
                   share_threshold=settings.drift_share_threshold,
                   prediction_alarm=settings.prediction_drift_alarm,
                   min_auc=settings.quality_min_auc,
                   min_labels=settings.quality_min_labels,
                   max_error_ratio=settings.quality_max_error_ratio)

    def with_overrides(self, **changes: Any) -> DriftPolicy:
        """A copy with the given fields replaced; a None value keeps the current one."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float       # the test's p-value: the smaller, the stronger the evidence of drift
    threshold: float   # the column drifted when score < threshold
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    features: dict[str, ColumnDrift]
    prediction: ColumnDrift | None
    current_rows: int
    reference_rows: int
    snapshot: Any = field(repr=False, compare=False)
    false_alarm_rate: float = DEFAULT_DRIFT_FALSE_ALARM_RATE
    share_threshold: float = DEFAULT_DRIFT_SHARE_THRESHOLD
    prediction_alarm: bool = DEFAULT_PREDICTION_DRIFT_ALARM
    # Feature -> the test of its residual given the other features (ConditionalModel),
    # for the features the others explain well.
    conditional: dict[str, ColumnDrift] = field(default_factory=dict)
    # The classifier two-sample test of all the features together (column JOINT_COLUMN),
    # and its held-out AUC; None when the window was too small for it.
    joint: ColumnDrift | None = None
    joint_auc: float | None = None

    @property
    def drifted_features(self) -> list[str]:
        """Features whose own distribution moved (their own test failed)."""
        return [name for name, col in self.features.items() if col.drifted]

    @property
    def drifted_relations(self) -> list[str]:
        """How features go together changed: "feature | others" for each feature whose
        residual given the others moved (a feature tied to one that moved shows here
        too), and JOINT_COLUMN when the classifier told the window from the reference."""
        return ([conditional_column(name) for name, col in self.conditional.items()
                 if col.drifted] + ([self.joint.column] if self.joint_drifted else []))

    @property
    def joint_drifted(self) -> bool:
        return self.joint is not None and self.joint.drifted

    @property
    def share(self) -> float:
        """Share of the schema's features whose own drift test failed."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def decision_share(self) -> float:
        """What the decision compares with the threshold: drifted features and drifted
        relations (one column each, the joint test one more) over the features."""
        if not self.features:
            return 0.0
        return min(1.0, (len(self.drifted_features) + len(self.drifted_relations))
                   / len(self.features))

    @property
    def effective_share_threshold(self) -> float:
        """The smallest share that counts: never less than one feature."""
        one_feature = 1 / len(self.features) if self.features else 1.0
        return max(self.share_threshold, one_feature)

    @property
    def prediction_drifted(self) -> bool:
        return self.prediction is not None and self.prediction.drifted

    @property
    def drift_detected(self) -> bool:
        """Data drift: enough features drifted (or the prediction did, when it counts)."""
        return (self.decision_share >= self.effective_share_threshold
                or (self.prediction_alarm and self.prediction_drifted))

    def reasons(self) -> list[str]:
        out = []
        if self.decision_share >= self.effective_share_threshold:
            named = ", ".join(self.drifted_features + self.drifted_relations)
            out.append(f"drift share {self.share:.2f} ({named})")
        if self.prediction_alarm and self.prediction is not None and self.prediction.drifted:
            out.append(f"prediction drift (p={self.prediction.score:.2g})")
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "drift_detected": self.drift_detected,
            "drift_share": self.share,
            "drift_share_threshold": self.effective_share_threshold,
            "false_alarm_rate": self.false_alarm_rate,
            "prediction_drift_alarm": self.prediction_alarm,
            "drifted_features": self.drifted_features,
            "drifted_relations": self.drifted_relations,
            "prediction_drift": None if self.prediction is None else {
                "score": self.prediction.score, "drifted": self.prediction.drifted,
                "method": self.prediction.method, "threshold": self.prediction.threshold},
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "features": {name: {"score": c.score, "threshold": c.threshold,
                                "method": c.method, "drifted": c.drifted}
                         for name, c in self.features.items()},
            "conditional": {name: {"score": c.score, "threshold": c.threshold,
                                   "method": c.method, "drifted": c.drifted}
                            for name, c in self.conditional.items()},
            "joint_drift": None if self.joint is None else {
                "score": self.joint.score, "drifted": self.joint.drifted,
                "method": self.joint.method, "threshold": self.joint.threshold,
                "auc": self.joint_auc},
        }


@dataclass(frozen=True)
class Alarm:
    """The monitoring decision for one window: data drift, or live quality too low."""

    data_drift: bool
    quality_degraded: bool
    reasons: tuple[str, ...]

    @property
    def detected(self) -> bool:
        return self.data_drift or self.quality_degraded

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None


def quality_shortfall(quality: LiveQuality | None, policy: DriftPolicy, task: Task,
                      reference: dict[str, float]) -> str | None:
    """Why live quality is too poor (the task's rule: an AUC below QUALITY_MIN_AUC, an
    error above QUALITY_MAX_ERROR_RATIO times the holdout's), measured on enough labels to
    mean something; None when it is not."""
    if quality is None or quality.labels < policy.min_labels:
        return None
    return task.shortfall(quality.figures(), reference, policy.quality_limits)


def drift_alarm(drift: DriftResult | None, quality: LiveQuality | None,
                policy: DriftPolicy, task: Task, reference: dict[str, float]) -> Alarm:
    """Combine the window's data drift and live quality into the one alarm (`task`, and
    `reference`, the version's holdout figures: what live quality is held to)."""
    reasons: list[str] = []
    data_drift = drift is not None and drift.drift_detected
    if drift is not None and data_drift:
        reasons.extend(drift.reasons())
    shortfall = quality_shortfall(quality, policy, task, reference)
    if quality is not None and shortfall is not None:
        reasons.append(f"{shortfall} on {quality.labels} labels")
    return Alarm(data_drift=data_drift, quality_degraded=shortfall is not None,
                 reasons=tuple(reasons))


def numeric_p_value(reference: pd.Series, current: pd.Series) -> float:
    """Mann-Whitney (two-sided) or K-S: the smaller p-value, doubled; nulls ignored."""
    from scipy.stats import ks_2samp, mannwhitneyu

    ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=float)
    if len(ref) == 0 or len(cur) == 0:
        return 1.0
    p_values = [mannwhitneyu(ref, cur, alternative="two-sided").pvalue,
                ks_2samp(ref, cur).pvalue]
    # Identical constant samples give NaN: no evidence of drift.
    finite = [float(p) for p in p_values if not math.isnan(p)]
    return min(1.0, 2 * min(finite)) if finite else 1.0


def pooled_contingency(reference: pd.Series, current: pd.Series) -> np.ndarray:
    """Counts per category (reference row, current row), the rare ones pooled.

    Categories are pooled from the rarest in the reference up until the pool is
    expected MIN_EXPECTED_COUNT times in the current window; a category the
    reference never saw is the rarest of all.
    """
    ref_counts = reference.value_counts()
    cur_counts = current.value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index),
                        key=lambda c: (ref_counts.get(c, 0), str(c)))
    scale = len(current) / max(len(reference), 1)
    kept: list[np.ndarray] = []
    pool = np.zeros(2)
    for category in categories:
        counts = np.array([ref_counts.get(category, 0), cur_counts.get(category, 0)], float)
        if pool.any() or counts[0] * scale < MIN_EXPECTED_COUNT:
            pool += counts
            if pool[0] * scale >= MIN_EXPECTED_COUNT:
                kept.append(pool)
                pool = np.zeros(2)
        else:
            kept.append(counts)
    if pool.any():
        if kept:  # too rare on its own even pooled: joins the smallest kept category
            kept[0] = kept[0] + pool
        else:
            kept.append(pool)
    return np.array(kept).T


def categorical_p_value(reference: pd.Series, current: pd.Series) -> float:
    """Two-sample chi-square on the pooled contingency table; nulls ignored."""
    from scipy.stats import chi2_contingency

    table = pooled_contingency(reference.dropna(), current.dropna())
    if table.shape[1] < 2 or not table[0].any() or not table[1].any():
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


# --- conditional tests: what the other features do not explain ----------------------------

CONDITIONAL_SUFFIX = " | others"
# A numeric feature gets a conditional test when the other features explain at least
# this share of its variance in the reference; below, its residual is nearly the
# feature itself and a second test would only spend false-alarm budget.
MIN_CONDITIONAL_R2 = 0.2
MIN_ROWS_PER_INPUT = 10


def conditional_column(feature: str) -> str:
    """The residual column's name for `feature` (e.g. "credit_limit | others")."""
    return feature + CONDITIONAL_SUFFIX


@dataclass(frozen=True)
class ConditionalModel:
    """Least-squares fits, on the reference, of each numeric feature that the others
    predict well, from the others (numbers as they are, long-tailed positive ones on
    a log scale, categories one-hot).

    Why: a feature's own spread is partly its neighbours' doing.  Credit limits
    vary with income and card tier; a 20% rise in limits is 0.26 of the limits' own
    spread but 0.33 of what income, card and the rest leave unexplained, and at 300
    rows that separates a test that catches it in ~3 windows of 4 from one that
    catches it nearly always (`make bench-fidelity`).  The residual's test also sees
    a change in how features go together that leaves each one's spread alone.
    """

    numeric: tuple[str, ...]
    log_scale: frozenset[str]
    fill: dict[str, float]                   # reference means, for missing predictors
    categories: dict[str, tuple[Any, ...]]   # reference categories, one-hot columns
    fits: dict[str, tuple[tuple[str, ...], np.ndarray]]  # feature -> (inputs, coefficients)
    r_squared: dict[str, float]

    @classmethod
    def fit(cls, reference: pd.DataFrame, schema: Schema) -> ConditionalModel:
        numeric = tuple(schema.numeric_features)
        values = {name: pd.to_numeric(reference[name], errors="coerce").to_numpy(float)
                  for name in numeric}
        log_scale = frozenset(name for name in numeric if _long_tailed(values[name]))
        scaled = {name: _scale(values[name], name in log_scale) for name in numeric}
        fill = {name: float(np.nanmean(v)) if np.isfinite(v).any() else 0.0
                for name, v in scaled.items()}
        categories = {name: tuple(sorted(reference[name].dropna().unique(), key=str))
                      for name in schema.categorical_features}
        # The inputs come from the model's own _design, so fit and use cannot disagree.
        model = cls(numeric, log_scale, fill, categories, {}, {})
        design = model._design(reference)
        fits, r_squared = {}, {}
        for target in numeric:
            y = scaled[target]
            known = np.isfinite(y)
            inputs = tuple(c for c in design if c != target)
            # Residuals on the rows of the fit are smaller than on new rows; with ten
            # rows an input or more that difference is negligible (a 100-row reference
            # and 15 inputs false-alarmed ~4x the budget in simulation).
            if not inputs or known.sum() < max(50, MIN_ROWS_PER_INPUT * (len(inputs) + 1)):
                continue
            x = np.column_stack([np.ones(known.sum())] + [design[c][known] for c in inputs])
            coefficients, *_ = np.linalg.lstsq(x, y[known], rcond=None)
            residual = y[known] - x @ coefficients
            variance = float(np.var(y[known]))
            r2 = 1.0 - float(np.var(residual)) / variance if variance > 0 else 0.0
            r_squared[target] = r2
            if r2 >= MIN_CONDITIONAL_R2:
                fits[target] = (inputs, coefficients)
        return replace(model, fits=fits, r_squared=r_squared)

    def _design(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Model inputs by name: each numeric feature (missing -> reference mean) and
        one column per reference category (an unseen one is all zeros)."""
        columns: dict[str, np.ndarray] = {}
        for name in self.numeric:
            v = _scale(pd.to_numeric(frame[name], errors="coerce").to_numpy(float),
                       name in self.log_scale)
            columns[name] = np.where(np.isfinite(v), v, self.fill[name])
        for name, seen in self.categories.items():
            column = frame[name].to_numpy(object)
            for category in seen[1:]:  # the first is the baseline (the intercept)
                columns[f"{name}={category}"] = (column == category).astype(float)
        return columns

    def residuals(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One column per fitted feature: its value minus what the others predict
        (NaN where the feature itself is missing)."""
        design = self._design(frame)
        out = {}
        for target, (inputs, coefficients) in self.fits.items():
            y = _scale(pd.to_numeric(frame[target], errors="coerce").to_numpy(float),
                       target in self.log_scale)
            x = np.column_stack([np.ones(len(frame))] + [design[c] for c in inputs])
            out[conditional_column(target)] = y - x @ coefficients
        return pd.DataFrame(out, index=frame.index)


def _long_tailed(values: np.ndarray) -> bool:
    """Non-negative and right-skewed (amounts, limits): compared on a log scale."""
    v = values[np.isfinite(values)]
    if v.size < 50 or v.min() < 0 or v.std() == 0:
        return False
    skew = float(np.mean(((v - v.mean()) / v.std()) ** 3))
    return skew > 1.0


def _scale(values: np.ndarray, log: bool) -> np.ndarray:
    if not log:
        return values
    # A negative amount (possible where the schema sets no minimum) has no log: it is
    # left out of the residual test, and the feature's own test sees it.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log1p(np.where(values >= 0, values, np.nan))


# --- the joint test: a classifier told to find the window among the reference -----------

JOINT_COLUMN = "features jointly"
# Below this many rows on either side the held-out half is too small to say anything:
# no joint test (and no share of the false-alarm budget spent on one).
MIN_JOINT_ROWS = 50
# The classifier: a small gradient-boosted model (sklearn's histogram GBM).  Sixteen
# leaves let a tree combine three or four features (a relation that changes shape
# needs that); twenty rows a leaf at least and a hundred rounds keep it cheap
# (~0.3 s on one thread for 3,000 + 5,000 rows) and far from memorising rows.
JOINT_MODEL = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 16,
               "min_samples_leaf": 20, "early_stopping": False}
JOINT_SEED = 0


@dataclass(frozen=True)
class ClassifierTest:
    """A classifier two-sample test: its held-out AUC, its p-value, and each held-out
    row's score (NaN for the rows it trained on), by position in each frame."""

    p_value: float
    auc: float
    reference_scores: np.ndarray
    current_scores: np.ndarray


def classifier_test(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema,
                    seed: int = JOINT_SEED) -> ClassifierTest | None:
    """Can a small model tell the window's rows from the reference's?  None when either
    side has fewer than MIN_JOINT_ROWS rows.

    Half of each side (stratified, seeded) trains a gradient-boosted classifier on the
    features and on the residuals of the ConditionalModel fitted on the training half of
    the reference; the other half is scored, and the p-value is the one-sided
    Mann-Whitney test of the window's held-out scores over the reference's (their AUC
    above 0.5).  That null is exact: under no drift the held-out rows of both sides are
    exchangeable and independent of the fitted model and transform, so their labels are
    a random split of their scores.  A cross-validated AUC would use every row, but its
    folds' models share training rows: on clean windows its z-score had an SD of 1.17,
    not 1 (p < 0.05 in 9% of them), so its Mann-Whitney null is not valid, and a
    permutation null would mean a thousand refits.  The residuals are given because a
    tree finds a change in how a feature follows the others with one split fewer (power
    at 1,000 rows on a relation that changes shape: z 4.6 without, 6.4 with).

    A window larger than the reference is subsampled to the reference's size (seeded):
    the reference half bounds what the test can see anyway.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    if min(len(reference), len(current)) < MIN_JOINT_ROWS:
        return None
    rng = np.random.default_rng(seed)
    in_window = np.arange(len(current))
    if len(current) > len(reference):
        in_window = np.sort(rng.choice(len(current), size=len(reference), replace=False))
    window = current.iloc[in_window]
    both = pd.concat([reference[schema.feature_names], window[schema.feature_names]],
                     ignore_index=True)
    is_window = np.r_[np.zeros(len(reference)), np.ones(len(window))]
    train, test = train_test_split(np.arange(len(both)), test_size=0.5, stratify=is_window,
                                   random_state=seed)
    train, test = np.sort(train), np.sort(test)
    train_reference = train[is_window[train] == 0]
    x, categorical = _joint_design(both, schema, reference.iloc[train_reference])
    model = HistGradientBoostingClassifier(**JOINT_MODEL, categorical_features=categorical,
                                           random_state=seed)
    # One thread: the model is small, and OpenMP's waiting threads made it 5 to 50 times
    # slower on a busy 2-core machine (0.3 s -> 4-15 s a window).
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(x[train], is_window[train])
        scores = model.predict_proba(x[test])[:, 1]
    held_out = is_window[test] == 1
    result = mannwhitneyu(scores[held_out], scores[~held_out], alternative="greater",
                          method="asymptotic")
    auc = float(result.statistic) / (held_out.sum() * (~held_out).sum())
    all_scores = np.full(len(both), np.nan)
    all_scores[test] = scores
    current_scores = np.full(len(current), np.nan)
    current_scores[in_window] = all_scores[len(reference):]
    return ClassifierTest(p_value=float(result.pvalue), auc=auc,
                          reference_scores=all_scores[:len(reference)],
                          current_scores=current_scores)


def _joint_design(frame: pd.DataFrame, schema: Schema,
                  fit_on: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's inputs: numbers as numbers (missing stays NaN), categories as codes
    of the categories `fit_on` has (one more code for any other, NaN for missing), and the
    residuals of a ConditionalModel fitted on `fit_on`; and which columns are categories."""
    columns, categorical = [], []
    for name in schema.feature_names:
        if name in schema.categorical_features:
            known = {v: i for i, v in enumerate(sorted(fit_on[name].dropna().unique(),
                                                       key=str))}
            codes = [np.nan if pd.isna(v) else known.get(v, len(known))
                     for v in frame[name].to_numpy(object)]
            columns.append(np.asarray(codes, dtype=float))
            # The GBM takes at most 255 categories a column; beyond, codes as numbers.
            categorical.append(len(known) < 250)
        else:
            columns.append(pd.to_numeric(frame[name], errors="coerce").to_numpy(float))
            categorical.append(False)
    residuals = ConditionalModel.fit(fit_on, schema).residuals(frame)
    for name in residuals:
        columns.append(residuals[name].to_numpy(float))
        categorical.append(False)
    return np.column_stack(columns), np.array(categorical)


# --- every test, once ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Tests:
    """What one window's tests found: p-value and method by column, and the joint test."""

    p_values: dict[str, float]
    methods: dict[str, str]
    features: tuple[str, ...]
    relations: tuple[str, ...]        # the features with a residual test
    prediction: bool                  # the prediction was tested
    joint: ClassifierTest | None
    residuals: tuple[pd.DataFrame, pd.DataFrame]   # reference's, current's


def _run_tests(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema,
               conditional: ConditionalModel | None, with_prediction: bool) -> _Tests:
    """Every test of the window, each computed once (`conditional`: None fits it here)."""
    categorical = set(schema.categorical_features)
    found: dict[str, float] = {}
    methods: dict[str, str] = {}
    for name in [*schema.feature_names, *([PREDICTION_COLUMN] if with_prediction else [])]:
        test, method = ((categorical_p_value, CATEGORICAL_TEST) if name in categorical
                        else (numeric_p_value, NUMERIC_TEST))
        found[name], methods[name] = test(reference[name], current[name]), method
    conditional = conditional or ConditionalModel.fit(reference, schema)
    reference_residuals = conditional.residuals(reference)
    current_residuals = conditional.residuals(current)
    for name in reference_residuals:
        found[name] = numeric_p_value(reference_residuals[name], current_residuals[name])
        methods[name] = NUMERIC_TEST
    joint = classifier_test(reference, current, schema)
    if joint is not None:
        found[JOINT_COLUMN], methods[JOINT_COLUMN] = joint.p_value, JOINT_TEST
    return _Tests(found, methods, tuple(schema.feature_names), tuple(conditional.fits),
                  with_prediction, joint, (reference_residuals, current_residuals))


def _counted(tests: _Tests, policy: DriftPolicy) -> list[str]:
    """The columns the decision counts, so the columns the false-alarm budget is split over."""
    return [*tests.features, *map(conditional_column, tests.relations),
            *([JOINT_COLUMN] if tests.joint is not None else []),
            *([PREDICTION_COLUMN] if tests.prediction and policy.prediction_alarm else [])]


def p_values(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema,
             policy: DriftPolicy | None = None,
             conditional: ConditionalModel | None = None) -> dict[str, float]:
    """The p-values of the columns `compute_drift` decides on, computed as it computes
    them but without its result or report: each feature, each conditional residual
    ("feature | others"), the joint test (JOINT_COLUMN) and the prediction when it counts.

    For benchmarks that need thousands of windows; pass the reference's `conditional`
    model to skip refitting it per window.
    """
    policy = policy or DriftPolicy()
    with_prediction = (policy.prediction_alarm and PREDICTION_COLUMN in reference
                       and PREDICTION_COLUMN in current)
    tests = _run_tests(reference, current, schema, conditional, with_prediction)
    return {name: tests.p_values[name] for name in _counted(tests, policy)}


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema,
                  policy: DriftPolicy | None = None, *, report: bool = True) -> DriftResult:
    """Per-column drift of `current` against `reference`, the joint test, and the
    data-drift decision.

    Both frames hold the schema's features; when both also have a `prediction`
    column (the model's probability), its drift is tested too.  `report`: also build
    Evidently's HTML report of these same results (`DriftResult.snapshot`; ~1 s, and
    ~3.5 s to import Evidently once); without it `snapshot` is None.
    """
    if current.empty:
        raise ValueError("the current window is empty: no predictions to compare")
    policy = policy or DriftPolicy()
    with_prediction = PREDICTION_COLUMN in reference and PREDICTION_COLUMN in current
    tests = _run_tests(reference, current, schema, None, with_prediction)
    counted = _counted(tests, policy)
    threshold = policy.false_alarm_rate / len(counted)
    columns = {name: ColumnDrift(column=name, method=tests.methods[name], score=p,
                                 threshold=threshold, drifted=p < threshold)
               for name, p in tests.p_values.items()}
    result = DriftResult(
        features={name: columns[name] for name in schema.feature_names},
        conditional={name: columns[conditional_column(name)] for name in tests.relations},
        prediction=columns.get(PREDICTION_COLUMN),
        joint=columns.get(JOINT_COLUMN),
        joint_auc=None if tests.joint is None else tests.joint.auc,
        current_rows=len(current),
        reference_rows=len(reference),
        snapshot=None,
        false_alarm_rate=policy.false_alarm_rate,
        share_threshold=policy.share_threshold,
        prediction_alarm=policy.prediction_alarm,
    )
    if report:
        result = replace(result, snapshot=_report(reference, current, schema, tests, result,
                                                  counted))
    return result


# --- Evidently: the HTML of the results above ------------------------------------------------

# The p-values Evidently shows, by column, while `_report` runs: its registered tests
# read them instead of testing again, so the page cannot disagree with the decision.
_SHOWN: ContextVar[dict[str, float] | None] = ContextVar("onebox_drift_shown", default=None)


def _shown_p_value(reference: pd.Series, _current: pd.Series, _feature_type: Any,
                   threshold: float) -> tuple[float, bool]:
    shown = _SHOWN.get()
    if shown is None or reference.name not in shown:
        raise LookupError(f"no p-value computed for {reference.name!r}: onebox's Evidently "
                          "tests only show what compute_drift computed")
    p_value = shown[reference.name]
    return p_value, p_value < threshold


@functools.cache
def _register_tests() -> None:
    """Make the tests known to Evidently by name (once per process)."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    for name, display_name, kind in (
        (NUMERIC_TEST, "Mann-Whitney or K-S p-value (Bonferroni)", ColumnType.Numerical),
        (CATEGORICAL_TEST, "chi-square p-value (2-sample, rare pooled)",
         ColumnType.Categorical),
        (JOINT_TEST, "classifier two-sample test p-value (held-out AUC; values: each "
                     "held-out row's score)", ColumnType.Numerical),
    ):
        register_stattest(StatTest(name=name, display_name=display_name,
                                   allowed_feature_types=[kind]),
                          default_impl=_shown_p_value)


def _dataset(frame: pd.DataFrame, schema: Schema, with_prediction: bool,
             extra: pd.DataFrame | None = None) -> Any:
    """An Evidently dataset of the features (and the prediction), plus `extra` numeric
    columns (residuals, the joint test's scores) aligned by position."""
    from evidently import DataDefinition, Dataset

    numeric = list(schema.numeric_features)
    columns = [*schema.feature_names]
    if with_prediction:
        numeric.append(PREDICTION_COLUMN)
        columns.append(PREDICTION_COLUMN)
    data = frame[columns].copy()
    if extra is not None and not extra.empty:
        data = pd.concat([data, extra.set_axis(data.index)], axis=1)
        numeric.extend(extra.columns)
    for name in numeric:
        data[name] = pd.to_numeric(data[name], errors="coerce").astype("float64")
    for name in schema.categorical_features:
        data[name] = data[name].astype(object)
    definition = DataDefinition(numerical_columns=numeric,
                                categorical_columns=schema.categorical_features)
    return Dataset.from_pandas(data, data_definition=definition)


def _short_share(needed: int, columns: int) -> float:
    """`needed / columns` as the shortest decimal (3 significant digits at most, where
    enough) that Evidently's verdict reads as that exact share (drifted when
    `drifted / columns >= share`): above (needed - 1) / columns, at most needed / columns.
    Its page prints the share as given ("threshold is 0.058823529411764705")."""
    exact = needed / columns
    for digits in range(3, 18):
        scale = 10 ** (digits - 1 - math.floor(math.log10(exact)))
        short = math.floor(exact * scale) / scale
        if (needed - 1) / columns < short <= exact:
            return short
    return exact


def _report(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema, tests: _Tests,
            result: DriftResult, counted: list[str]) -> Any:
    """Evidently's report of `result`: every column's p-value, threshold and flag as
    computed, its distributions, and the dataset verdict at the share that makes it the
    data-drift decision."""
    # evidently takes ~3.5 s to import: only the processes that build reports pay it.
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    _register_tests()
    extras = [residuals.reset_index(drop=True) for residuals in tests.residuals]
    if tests.joint is not None:  # each held-out row's classifier score, NaN elsewhere
        extras[0][JOINT_COLUMN] = tests.joint.reference_scores
        extras[1][JOINT_COLUMN] = tests.joint.current_scores
    threshold = next(iter(result.features.values())).threshold
    # The decision needs `needed` drifted features and relations (one by default), or the
    # prediction when it counts: as a share of the counted columns, Evidently's verdict
    # is the same (with a share threshold above one feature, it counts the prediction
    # as one of them rather than enough alone).
    needed = max(1, math.ceil(result.effective_share_threshold * len(result.features) - 1e-9))
    # Registered lowest p-value first, so the drifted columns lead the lists that keep
    # this order (the Tests tab; its drift table sorts by p-value from high to low,
    # whatever the order).  The same columns, so the same decision.
    shown_order = sorted(counted, key=lambda name: tests.p_values[name])  # stable on ties
    items: list[Any] = [DataDriftPreset(
        columns=shown_order, drift_share=_short_share(needed, len(counted)),
        threshold=threshold, per_column_method={name: tests.methods[name] for name in counted})]
    if tests.prediction and PREDICTION_COLUMN not in counted:  # shown, not counted
        items.append(ValueDrift(column=PREDICTION_COLUMN, method=NUMERIC_TEST,
                                threshold=threshold))
    token = _SHOWN.set(dict(tests.p_values))
    try:
        return Report(items, include_tests=True).run(
            current_data=_dataset(current, schema, tests.prediction, extras[1]),
            reference_data=_dataset(reference, schema, tests.prediction, extras[0]))
    finally:
        _SHOWN.reset(token)
