"""Probability calibration that travels with a model version.

The monitoring estimates a window's quality from the served probabilities alone
(monitoring.cbpe), which is only as true as the probabilities: a model that says
0.30 must be right about 30% of the time.  XGBoost's probabilities are close but
not exact (shrinkage and regularisation pull them toward the base rate; a deep
model on few rows pushes them apart), so the train flow fits Platt scaling on
out-of-fold predictions of the rows it trains on (never the gate's holdout), and
everything that scores a version applies it.

Platt scaling is a logistic fit on the log-odds, `calibrated = sigmoid(slope *
logit(p) + intercept)`: strictly increasing when slope > 0, so the ranking, and
with it the AUC, is exactly the raw model's; it is linear in log-odds, so a
TreeSHAP explanation stays additive (each contribution times the slope, the base
times the slope plus the intercept).  Isotonic regression bends the curve more
freely but makes steps (ties that change the AUC and cannot be explained by
feature), and on a few thousand rows it overfits where Platt's two numbers do not.

Platt's logistic shape is not the true one, though: the quality estimate needs the
expected outcome *at each served probability*, and a boosted model's score against
the truth bends (the churn process has a step at a low balance).  With Platt alone
the estimated AUC of 5,000-row windows ran 0.006-0.013 below the realised one; with
the outcome curve below, fitted on the same out-of-fold rows, 0.000-0.009 (the
label noise alone makes 0.006: `python -m benchmarks.estimation`).  So the version
also carries `outcome_curve`: an isotonic regression of the outcome on the served
probability, read as straight lines between its blocks' centres (strictly
increasing inside the fitted range).  Only the estimate uses it: serving it would
turn close scores into ties and lose the additive explanation.

The expected calibration error (ECE) is measured on equal-count bins: with ~16%
positives, equal-width bins put most rows in the first bin and say little.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np

# Keeps logit() finite; probabilities this close to 0 or 1 are not told apart anyway.
_EPSILON = 1e-12
# Up to this many rows, calibrate in plain Python (Calibration.apply).
_SCALAR_ROWS = 8
ECE_BINS = 10


@dataclass(frozen=True)
class Calibration:
    """Platt scaling: calibrated log-odds = slope * raw log-odds + intercept."""

    slope: float = 1.0
    intercept: float = 0.0
    method: str = "platt"
    fitted_rows: int = 0
    # (served probabilities, expected outcome rates): knots of the outcome curve; empty:
    # none fitted (a version from before it), the served probability stands for itself.
    outcome_curve: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw ones."""
        p = np.asarray(probabilities, dtype=float)
        if self.is_identity:
            return p
        if p.size <= _SCALAR_ROWS:
            # A request's few rows: numpy's per-call overhead (~17 us for the five array
            # operations on one row) would cost more than the arithmetic.
            return np.array([self._apply_one(v) for v in p.ravel().tolist()]).reshape(p.shape)
        return _sigmoid(self.slope * logit(p) + self.intercept)

    def _apply_one(self, p: float) -> float:
        p = min(max(p, _EPSILON), 1 - _EPSILON)
        z = self.slope * (math.log(p) - math.log1p(-p)) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0

    def apply_log_odds(self, log_odds: np.ndarray) -> np.ndarray:
        """Calibrated log-odds for raw ones (an explanation's base and score)."""
        return self.slope * np.asarray(log_odds, dtype=float) + self.intercept

    def expected_outcome(self, served: np.ndarray) -> np.ndarray:
        """The expected outcome rate at each served (calibrated) probability: what the
        quality estimate weighs each prediction by."""
        p = np.asarray(served, dtype=float)
        knots, rates = self.outcome_curve
        if len(knots) < 2:
            return p
        return np.interp(p, knots, rates)

    def with_outcome_curve(self, y_true: np.ndarray, served: np.ndarray) -> Calibration:
        """This calibration with its outcome curve fitted on these labels and served
        probabilities (out-of-fold: the rows were not trained on)."""
        from sklearn.isotonic import IsotonicRegression

        y = np.asarray(y_true, dtype=float)
        p = np.asarray(served, dtype=float)
        if len(np.unique(y)) < 2:
            return self
        fitted = IsotonicRegression(out_of_bounds="clip").fit(p, y).predict(p)
        order = np.argsort(p, kind="stable")
        p, fitted = p[order], fitted[order]
        # One knot per block of equal fitted rate, at the block's mean probability.
        starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
        knots = np.add.reduceat(p, starts) / np.diff(np.r_[starts, len(p)])
        rates = fitted[starts]
        return replace(self, outcome_curve=(tuple(knots.round(6).tolist()),
                                            tuple(rates.round(6).tolist())))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | dict | None) -> Calibration:
        """The stored calibration; a version logged before calibration existed: identity."""
        if raw is None:
            return cls()
        data = json.loads(raw) if isinstance(raw, str) else raw
        knots, rates = data.get("outcome_curve") or ((), ())
        return cls(slope=float(data["slope"]), intercept=float(data["intercept"]),
                   method=str(data.get("method", "platt")),
                   fitted_rows=int(data.get("fitted_rows", 0)),
                   outcome_curve=(tuple(map(float, knots)), tuple(map(float, rates))))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPSILON, 1 - _EPSILON)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_platt(y_true: np.ndarray, raw_probabilities: np.ndarray) -> Calibration:
    """The maximum-likelihood slope and intercept on these labels and raw probabilities
    (unregularised: two parameters on thousands of rows need no shrinkage).

    Falls back to identity when the fit would not be strictly increasing (a model no
    better than chance on these rows): a calibration must never reverse the ranking."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y_true, dtype=int)
    if len(np.unique(y)) < 2:
        return Calibration(fitted_rows=len(y))
    x = logit(raw_probabilities).reshape(-1, 1)
    fit = LogisticRegression(penalty=None, max_iter=1000).fit(x, y)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not (slope > 0 and math.isfinite(slope) and math.isfinite(intercept)):
        return Calibration(fitted_rows=len(y))
    return Calibration(slope=slope, intercept=intercept, fitted_rows=len(y))


@dataclass(frozen=True)
class ReliabilityBin:
    rows: int
    mean_predicted: float
    observed_rate: float


def reliability_bins(y_true: np.ndarray, probabilities: np.ndarray,
                     bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Rows sorted by probability, cut into `bins` groups of (nearly) equal count."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    order = np.argsort(p, kind="stable")
    return [ReliabilityBin(len(group), float(p[group].mean()), float(y[group].mean()))
            for group in np.array_split(order, min(bins, len(p))) if len(group)]


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Row-weighted mean |observed rate - mean predicted| over equal-count bins."""
    groups = reliability_bins(y_true, probabilities, bins)
    total = sum(g.rows for g in groups)
    if total == 0:
        return 0.0
    return sum(g.rows * abs(g.observed_rate - g.mean_predicted) for g in groups) / total
