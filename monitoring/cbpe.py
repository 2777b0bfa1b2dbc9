"""Confidence-based performance estimation (CBPE): the model's quality estimated
from its own probabilities, before any label arrives.

The method is NannyML's CBPE (https://nannyml.readthedocs.io/en/stable/how_it_works/
performance_estimation.html), written here with numpy from that description.  If
the probabilities are calibrated, a row scored p is a positive with probability p,
so the expected confusion matrix at the decision threshold is a sum of
probabilities: E[TP] = sum of p over the rows decided positive, E[FP] = sum of
(1 - p) over the same rows, and so on.  Precision is E[TP] / rows decided
positive, recall E[TP] / E[positives].  The expected ROC curve walks the scores
from the highest down: after each distinct score, expected TPR = cumsum(p) /
sum(p) and expected FPR = cumsum(1 - p) / sum(1 - p); its trapezoid area is the
expected AUC (equal scores are one step of the curve, as in sklearn).

What it assumes, and so what it cannot see:
- Calibrated probabilities.  The estimate is only as good as P(churn | p) = p on
  the traffic being estimated; an over- or under-confident model gives a wrong
  estimate.  So the version's probabilities are Platt-calibrated on out-of-fold
  predictions, and the exporter weighs each served probability by the version's
  outcome curve (core.calibration; monitoring.window `estimate_from_served`).
- Covariate shift only.  A change of the inputs' distribution is fine as long as
  P(churn | features) stays what the model learnt.  A concept change (the same
  customers now churn for other reasons) is invisible to it: it sees only the
  model's probabilities, and those do not change when the relation does.  Only
  labels (monitoring.quality) show that.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from monitoring.estimate import EstimatedQuality


def _probabilities(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if np.isnan(array).any():
        raise ValueError(f"{name} contain NaN")
    return array


def expected_roc_auc(probabilities: ArrayLike, scores: ArrayLike | None = None) -> float | None:
    """The expected ROC AUC of `scores` when row i is positive with `probabilities[i]`.

    `scores` rank the rows (default: the probabilities themselves, which is CBPE);
    another ranking answers "what AUC would these scores have if these were the true
    probabilities", e.g. the model's scores weighted by a simulator's true ones.
    None when the window is empty or has no expected positive or no expected negative.
    """
    p = _probabilities(probabilities, "probabilities")
    s = p if scores is None else _probabilities(scores, "scores")
    if s.shape != p.shape:
        raise ValueError(f"{len(s)} scores for {len(p)} probabilities")
    if len(p) == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s, p = s[order], p[order]
    # The last row of each run of equal scores: a tie group is one step of the curve.
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), len(s) - 1)
    tp = np.cumsum(p)[ends]
    fp = np.cumsum(1.0 - p)[ends]
    if tp[-1] <= 0.0 or fp[-1] <= 0.0:
        return None
    tpr = np.concatenate(([0.0], tp / tp[-1]))
    fpr = np.concatenate(([0.0], fp / fp[-1]))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def estimate_quality(probabilities: ArrayLike, threshold: float, *,
                     scores: ArrayLike | None = None) -> EstimatedQuality:
    """Expected AUC, precision and recall of a window from calibrated probabilities alone.

    A row is decided positive when its score is >= `threshold`, the predictor's rule.
    `scores` (default: the probabilities) are what is thresholded and ranked, when they
    are not the probabilities used as the truth (see expected_roc_auc).
    """
    p = _probabilities(probabilities, "probabilities")
    if ((p < 0.0) | (p > 1.0)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    s = p if scores is None else _probabilities(scores, "scores")
    if s.shape != p.shape:
        raise ValueError(f"{len(s)} scores for {len(p)} probabilities")
    if len(p) == 0:
        return EstimatedQuality(0, None, None, None)
    decided = s >= threshold
    decided_positive = int(decided.sum())
    expected_tp = float(p[decided].sum())
    expected_positives = float(p.sum())
    return EstimatedQuality(
        rows=len(p),
        auc=expected_roc_auc(p, s),
        precision=expected_tp / decided_positive if decided_positive else None,
        recall=expected_tp / expected_positives if expected_positives > 0.0 else None,
    )
