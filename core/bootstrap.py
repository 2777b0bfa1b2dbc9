"""Percentile bootstrap intervals over a holdout's rows: one implementation, so the
figures the train flow logs on the run and those the model card shows are the same.

Resamples are drawn as weights (how often each row was drawn) so one sort of the scores
serves every resample of an AUC, and they are paired: two models scored on the same
resamples, so what they share cancels out of their difference.  A fixed seed gives the
same interval for the same rows and predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

RESAMPLES = 1_000
SEED = 20_240_601
CONFIDENCE = 0.95
# One weight per (resample, row); this many cells at a time keep it near 32 MB whatever
# the holdout's size.
_CELLS_PER_CHUNK = 4_000_000


def resample_weights(rows: int, resamples: int = RESAMPLES, seed: int = SEED
                     ) -> Iterator[np.ndarray]:
    """Bootstrap resamples as weights: how often each row was drawn, shape (chunk, rows)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(rows, 1))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, rows, size=(size, rows))
        # Offset each resample's draws into its own block of `rows`, so one bincount
        # counts them all.
        flat = (drawn + np.arange(size)[:, None] * rows).ravel()
        yield np.bincount(flat, minlength=size * rows).reshape(size, rows).astype(np.float64)


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The rank (Mann-Whitney) AUC of `scores` under each row of `weights`, ties counting
    half: the share of (positive, negative) pairs, weighted, the positive outranks.

    `weights` has shape (resamples, rows); the answer one AUC per resample (NaN where a
    resample drew no positive or no negative).
    """
    order = np.argsort(scores, kind="mergesort")
    ordered_scores = np.asarray(scores, dtype=np.float64)[order]
    positive = np.asarray(y_true)[order].astype(bool)
    ordered_weights = weights[:, order]
    # Rows with equal scores form one group: within it a pair is a tie.
    group_starts = np.flatnonzero(np.r_[True, ordered_scores[1:] != ordered_scores[:-1]])
    positive_w = np.add.reduceat(ordered_weights * positive, group_starts, axis=1)
    negative_w = np.add.reduceat(ordered_weights * ~positive, group_starts, axis=1)
    negatives_below = np.cumsum(negative_w, axis=1) - negative_w
    wins = (positive_w * (negatives_below + 0.5 * negative_w)).sum(axis=1)
    pairs = positive_w.sum(axis=1) * negative_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _errors(y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.asarray(predicted, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)


def weighted_rmse(y_true: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.sqrt(weights @ _errors(y_true, predicted) ** 2 / weights.sum(axis=1))


def weighted_mae(y_true: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weights @ np.abs(_errors(y_true, predicted)) / weights.sum(axis=1)


def weighted_r2(y_true: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """1 - squared error / squared spread around the resample's own mean (NaN where a
    resample drew one value only)."""
    y = np.asarray(y_true, dtype=np.float64)
    squared_errors = weights @ _errors(y, predicted) ** 2
    # Centred on the rows' own mean first: sum(w y²) - W mean² loses its digits when the
    # target's mean dwarfs its spread (a price in the millions that varies by thousands).
    y = y - y.mean()
    total = weights.sum(axis=1)
    mean = weights @ y / total
    spread = weights @ (y ** 2) - total * mean ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 1e-12 * np.maximum(weights @ (y ** 2), 1e-300),
                        1.0 - squared_errors / spread, np.nan)


# Each figure by its name (core.task.Metric.name, and R²) under bootstrap weights.
WEIGHTED: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "auc": weighted_auc, "rmse": weighted_rmse, "mae": weighted_mae, "r2": weighted_r2}


def resampled(figure: str, y_true: np.ndarray, *predictions: np.ndarray,
              resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`figure` of each prediction vector over the same resamples of the rows, shape
    (len(predictions), resamples): the same resamples for all, so differences are
    paired."""
    weighted = WEIGHTED[figure]
    y_true = np.asarray(y_true)
    out = [np.empty(0)] * len(predictions)
    for weights in resample_weights(len(y_true), resamples, seed):
        out = [np.concatenate([done, weighted(y_true, np.asarray(p), weights)])
               for done, p in zip(out, predictions, strict=True)]
    return np.vstack(out)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE
                        ) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def intervals(figures: tuple[str, ...], y_true: np.ndarray, predicted: np.ndarray
              ) -> dict[str, tuple[float, float]]:
    """The CONFIDENCE percentile interval of each of `figures` for one model, every figure
    on the same resamples, drawn once."""
    y_true = np.asarray(y_true)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in figures}
    for weights in resample_weights(len(y_true)):
        for name in figures:
            samples[name].append(WEIGHTED[name](y_true, predicted, weights))
    return {name: percentile_interval(np.concatenate(parts)) for name, parts in samples.items()}
