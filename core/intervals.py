"""Prediction intervals for a number: conformal on out-of-fold residuals.

The train flow has each training row's out-of-fold prediction (a model that never saw
the row made it; never the gate's holdout).  The interval at level 1 - alpha is the
served prediction plus or minus the ceil((n + 1)(1 - alpha))-th smallest of the rows'
scores (Lei et al. 2018, "Distribution-free predictive inference for regression").  The
served prediction is the final model's, refit on every row, while the residuals are the
fold models': this is CV conformal, not CV+ (Barber et al. 2021), so its coverage is not
guaranteed, only close to the level in practice -- it is measured on the gate's holdout
(the card and the run's metrics show it) and live on labelled rows (IntervalCoverageLow).

The score is the residual's size, either as it is (one width for every answer) or
divided by a model of its size given the predicted number (`Scale`: an isotonic fit of
|residual| on the prediction), so a fare of 5,000 INR does not get the interval of one
of 60,000.  The scale is fitted on one half of the rows and the quantile taken on the
other half (a scale fitted on the rows it is then measured on makes them look
better-behaved than new rows, and the interval too narrow).

Which of the two serves is decided on the out-of-fold rows themselves: each is fitted on
one half and judged on the other half at its own level by the interval score (Gneiting &
Raftery 2007: the width, plus 2 / (1 - level) times how far a real value falls outside
-- a proper score, so an interval that is narrow where the numbers are small and wide
where they are large beats one of the same mean width that misses the large ones); the
scaled one wins when its score is lower by SCALED_MIN_GAIN.  Either is clipped to the
target's declared range (a fare is never negative): a real value outside it is refused
anyway, so clipping loses no coverage.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import numpy as np

DEFAULT_LEVEL = 0.9
# A scale is never below this share of the median residual: a region of tiny residuals
# in the training rows must not make an interval of width ~0 there.
SCALE_FLOOR_SHARE = 0.05
# The scaled interval serves only when its interval score is this much lower than the
# constant one's: a tie (residuals of one size everywhere) keeps the simpler interval,
# whose coverage does not lean on a fitted scale.
SCALED_MIN_GAIN = 0.05


@dataclass(frozen=True)
class Scale:
    """The expected size of a residual given the predicted number: piecewise linear
    between knots (flat beyond them)."""

    knots: tuple[float, ...]
    sizes: tuple[float, ...]

    def __call__(self, predicted: np.ndarray) -> np.ndarray:
        return np.interp(predicted, self.knots, self.sizes)

    @classmethod
    def fit(cls, predicted: np.ndarray, residuals: np.ndarray) -> Scale:
        from sklearn.isotonic import IsotonicRegression

        size = np.abs(residuals)
        # The direction from the rank correlation (isotonic's own "auto" warns when unsure).
        ranks = np.argsort(np.argsort(predicted)), np.argsort(np.argsort(size))
        increasing = bool(np.corrcoef(*ranks)[0, 1] >= 0)
        iso = IsotonicRegression(increasing=increasing, out_of_bounds="clip").fit(predicted,
                                                                                 size)
        floor = max(SCALE_FLOOR_SHARE * float(np.median(size)), 1e-12)
        knots = np.asarray(iso.X_thresholds_, float)
        sizes = np.maximum(np.asarray(iso.y_thresholds_, float), floor)
        return cls(tuple(knots.tolist()), tuple(sizes.tolist()))


@dataclass(frozen=True)
class Interval:
    """What a regression version serves its intervals with."""

    level: float
    # The conformal quantile of the scores: a half-width (no scale), or how many scales.
    quantile: float
    scale: Scale | None = None
    # The target's declared range (None: unbounded on that side).
    floor: float | None = None
    ceiling: float | None = None

    def bounds(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        predicted = np.asarray(predicted, float)
        half = self.quantile * (self.scale(predicted) if self.scale else 1.0)
        low, high = predicted - half, predicted + half
        if self.floor is not None or self.ceiling is not None:
            low = np.clip(low, self.floor, self.ceiling)
            high = np.clip(high, self.floor, self.ceiling)
        return low, high

    def coverage_and_width(self, y: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
        """The share of `y` inside the intervals, and their mean width."""
        low, high = self.bounds(predicted)
        y = np.asarray(y, float)
        return float(((y >= low) & (y <= high)).mean()), float((high - low).mean())

    @property
    def method(self) -> str:
        return "conformal, scaled by the predicted number" if self.scale else "conformal"

    def to_json(self) -> str:
        scale = None if self.scale is None else {"knots": list(self.scale.knots),
                                                 "sizes": list(self.scale.sizes)}
        return json.dumps({"level": self.level, "quantile": self.quantile, "scale": scale,
                           "floor": self.floor, "ceiling": self.ceiling})

    @classmethod
    def from_json(cls, text: str) -> Interval:
        raw = json.loads(text)
        scale = raw.get("scale")
        return cls(float(raw["level"]), float(raw["quantile"]),
                   None if scale is None else Scale(tuple(scale["knots"]),
                                                    tuple(scale["sizes"])),
                   raw.get("floor"), raw.get("ceiling"))


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (the largest when that is past n: with
    fewer than 1 / (1 - level) rows the method asks for an unbounded interval)."""
    ordered = np.sort(np.asarray(scores, float))
    if not len(ordered):
        raise ValueError("no residuals to take an interval's quantile from")
    rank = min(math.ceil((len(ordered) + 1) * level), len(ordered))
    return float(ordered[rank - 1])


def _constant(residuals: np.ndarray, level: float) -> Interval:
    return Interval(level, conformal_quantile(np.abs(residuals), level))


def _scaled(scale: Scale, predicted: np.ndarray, residuals: np.ndarray, level: float
            ) -> Interval:
    """`scale` (fitted elsewhere) with the quantile of these rows' scaled residuals."""
    return Interval(level, conformal_quantile(np.abs(residuals) / scale(predicted), level),
                    scale)


def interval_score(y: np.ndarray, low: np.ndarray, high: np.ndarray, level: float) -> float:
    """The mean interval score of [low, high] at `level` (lower is better)."""
    penalty = 2 / (1 - level)
    return float(((high - low) + penalty * np.clip(low - y, 0, None)
                  + penalty * np.clip(y - high, 0, None)).mean())


def fit_interval(y: np.ndarray, out_of_fold: np.ndarray, level: float = DEFAULT_LEVEL,
                 seed: int = 42, floor: float | None = None, ceiling: float | None = None,
                 ) -> tuple[Interval, dict[str, float]]:
    """The interval to serve (clipped to [floor, ceiling]), and what chose it: each kind's
    mean interval score and width on the half of the out-of-fold rows it was not fitted
    on (`score_constant`, `score_scaled`, `width_constant`, `width_scaled`)."""
    if not 0 < level < 1:
        raise ValueError(f"an interval's level is between 0 and 1, not {level}")
    y, predicted = np.asarray(y, float), np.asarray(out_of_fold, float)
    residuals = y - predicted
    order = np.random.default_rng(seed).permutation(len(y))
    fit_rows, judge_rows = order[: len(y) // 2], order[len(y) // 2:]
    scale = Scale.fit(predicted[fit_rows], residuals[fit_rows])
    candidates = {"constant": _constant(residuals[fit_rows], level),
                  "scaled": _scaled(scale, predicted[fit_rows], residuals[fit_rows], level)}
    judged: dict[str, float] = {}
    for kind, candidate in candidates.items():  # fitted on one half, judged on the other
        low, high = candidate.bounds(predicted[judge_rows])
        judged[f"score_{kind}"] = interval_score(y[judge_rows], low, high, level)
        judged[f"width_{kind}"] = float((high - low).mean())
    if judged["score_scaled"] < (1 - SCALED_MIN_GAIN) * judged["score_constant"]:
        # The scale from the first half, the quantile from the second (split conformal).
        chosen = _scaled(scale, predicted[judge_rows], residuals[judge_rows], level)
    else:
        chosen = _constant(residuals, level)  # nothing fitted: every row's residual
    return replace(chosen, floor=floor, ceiling=ceiling), judged
