"""CBPE (monitoring.cbpe): quality estimated from calibrated probabilities, no labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from monitoring.cbpe import EstimatedQuality, estimate_quality, expected_roc_auc

THRESHOLD = 0.22  # about the champion's: ~16% churn


def churn_like(n: int, seed: int) -> np.ndarray:
    """Probabilities shaped like the churn model's: mean ~0.17, a long right tail."""
    return 1.0 / (1.0 + np.exp(-np.random.default_rng(seed).normal(-2.0, 1.2, n)))


def realised(p: np.ndarray, draws: int, seed: int, *, scores: np.ndarray | None = None
             ) -> dict[str, np.ndarray]:
    """AUC, precision and recall of `scores` (default p) over `draws` label sets ~ Bernoulli(p)."""
    scores = p if scores is None else scores
    labels = np.random.default_rng(seed).random((draws, len(p))) < p
    decided = scores >= THRESHOLD
    tp = labels[:, decided].sum(axis=1)
    return {
        "auc": np.array([roc_auc_score(y, scores) for y in labels]),
        "precision": tp / decided.sum(),
        "recall": tp / labels.sum(axis=1),
    }


def test_estimate_is_the_mean_of_realised_quality_on_calibrated_data():
    # 2,000 label draws: the standard error of the mean realised AUC is ~0.0003 (sd
    # ~0.013 at 2,000 rows); the estimate must lie within 4 standard errors.  (The
    # ratio estimators carry an O(1/n) bias, ~0.0002 here, inside that margin.)
    p = churn_like(2_000, seed=1)
    estimate = estimate_quality(p, THRESHOLD)
    draws = realised(p, 2_000, seed=2)
    for metric, values in draws.items():
        standard_error = values.std(ddof=1) / np.sqrt(len(values))
        got = getattr(estimate, metric)
        assert abs(got - values.mean()) < 4 * standard_error, (metric, got, values.mean(),
                                                               standard_error)
    assert estimate.rows == 2_000


def test_known_labels_give_exactly_sklearns_figures_with_ties():
    # Probabilities of 0 or 1 are labels; the scores rank them, with many ties (two
    # decimals), one of them across classes at the threshold.
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(3_000), 2)
    labels = (rng.random(3_000) < scores).astype(int)
    scores[:2] = THRESHOLD
    labels[:2] = [0, 1]
    estimate = estimate_quality(labels, THRESHOLD, scores=scores)
    decisions = (scores >= THRESHOLD).astype(int)
    assert estimate.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert estimate.precision == pytest.approx(precision_score(labels, decisions), abs=1e-12)
    assert estimate.recall == pytest.approx(recall_score(labels, decisions), abs=1e-12)


def test_a_tie_is_one_step_of_the_curve():
    # Two rows tied at 0.5 (one expected positive and one expected negative in total
    # between them) sit on the diagonal: half credit, not an order-dependent 0 or 1.
    assert expected_roc_auc([0.0, 1.0], scores=[0.5, 0.5]) == pytest.approx(0.5)
    assert expected_roc_auc([1.0, 0.0], scores=[0.5, 0.5]) == pytest.approx(0.5)
    # A positive above a tie of (positive, negative) above a negative: 1 - 0.5 * 1/2 * 1/2.
    assert expected_roc_auc([1, 1, 0, 0], scores=[0.9, 0.5, 0.5, 0.1]) == pytest.approx(
        roc_auc_score([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]))
    # With scores = probabilities, tied rows carry the same p: grouping changes nothing
    # whatever the order they arrive in.
    p = np.repeat([0.1, 0.3, 0.3, 0.7], 50)
    assert expected_roc_auc(p) == pytest.approx(expected_roc_auc(p[::-1]), abs=1e-12)


def test_a_probability_equal_to_the_threshold_is_decided_positive():
    # The predictor's rule (server/app.py): probability >= threshold.
    at_threshold = estimate_quality([0.3, 0.1], threshold=0.3)
    assert at_threshold.precision == pytest.approx(0.3)       # one row decided: E[TP] 0.3
    assert at_threshold.recall == pytest.approx(0.3 / 0.4)
    above = estimate_quality([0.3, 0.1], threshold=np.nextafter(0.3, 1))
    assert above.precision is None and above.recall == 0.0


def test_undefined_figures_are_none():
    assert estimate_quality([], THRESHOLD) == EstimatedQuality(0, None, None, None)
    # No positive can occur: no AUC, no recall; no row decided positive: no precision.
    none_positive = estimate_quality(np.zeros(100), THRESHOLD)
    assert none_positive == EstimatedQuality(100, None, None, None)
    # Every row certainly positive: no negative to rank against, but precision and recall are 1.
    all_positive = estimate_quality(np.ones(10), THRESHOLD)
    assert (all_positive.auc, all_positive.precision, all_positive.recall) == (None, 1.0, 1.0)
    assert all_positive.figures() == {"precision": 1.0, "recall": 1.0}  # what is exported


def test_probabilities_outside_zero_one_or_nan_are_refused():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        estimate_quality([0.2, 1.2], THRESHOLD)
    with pytest.raises(ValueError, match="NaN"):
        estimate_quality([0.2, np.nan], THRESHOLD)
    with pytest.raises(ValueError, match="3 scores for 2"):
        estimate_quality([0.2, 0.3], THRESHOLD, scores=[0.1, 0.2, 0.3])


def test_miscalibrated_probabilities_give_a_wrong_estimate():
    # The calibration assumption: squash the same ranking toward 0.5 and the estimate
    # believes every row is a coin toss, though the true churn (and so the realised
    # quality) did not change.
    p = churn_like(2_000, seed=4)
    squashed = 0.5 + 0.3 * (p - 0.5)
    draws = realised(p, 200, seed=5, scores=squashed)
    realised_auc = draws["auc"].mean()
    right = estimate_quality(p, THRESHOLD)
    wrong = estimate_quality(squashed, THRESHOLD)
    assert abs(right.auc - realised_auc) < 0.005
    assert realised_auc - wrong.auc > 0.15           # ~0.78 realised, ~0.58 estimated
    # Every squashed row is >= 0.35 > threshold: precision estimated as ~0.45, not ~0.17.
    assert wrong.precision - draws["precision"].mean() > 0.2
