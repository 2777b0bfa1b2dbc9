"""Platt scaling (core.calibration): fitted on labels, kept with the version, and what
every scorer applies."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.calibration import (
    Calibration,
    expected_calibration_error,
    fit_platt,
    logit,
    reliability_bins,
)


def overconfident(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, true probabilities, a model's probabilities twice as extreme in log-odds
    and shifted): the shape of a boosted model's miscalibration."""
    rng = np.random.default_rng(seed)
    true_log_odds = rng.normal(-1.7, 1.2, rows)
    truth = 1 / (1 + np.exp(-true_log_odds))
    labels = (rng.random(rows) < truth).astype(int)
    raw = 1 / (1 + np.exp(-(2.0 * true_log_odds + 0.5)))
    return labels, truth, raw


def test_platt_scaling_recovers_the_true_probabilities_of_an_overconfident_model() -> None:
    labels, truth, raw = overconfident(20_000, seed=1)
    calibration = fit_platt(labels, raw)
    # raw log-odds = 2 t + 0.5, so the truth is 0.5 * raw - 0.25.
    assert calibration.slope == pytest.approx(0.5, abs=0.03)
    assert calibration.intercept == pytest.approx(-0.25, abs=0.06)
    assert calibration.fitted_rows == 20_000
    held_out, held_truth, held_raw = overconfident(20_000, seed=2)
    calibrated = calibration.apply(held_raw)
    # A request's few rows take the plain-Python path: the same numbers.
    np.testing.assert_allclose([calibration.apply(held_raw[i:i + 1])[0] for i in range(50)],
                               calibrated[:50], rtol=1e-12)
    np.testing.assert_allclose(calibration.apply(held_raw[:3]), calibrated[:3], rtol=1e-12)
    np.testing.assert_allclose(calibrated, held_truth, atol=0.03)
    assert expected_calibration_error(held_out, calibrated) < 0.015
    assert expected_calibration_error(held_out, held_raw) > 0.05


def test_calibration_keeps_the_ranking_so_the_auc_is_the_raw_models() -> None:
    labels, _, raw = overconfident(5_000, seed=3)
    calibrated = fit_platt(labels, raw).apply(raw)
    assert roc_auc_score(labels, calibrated) == pytest.approx(roc_auc_score(labels, raw),
                                                              abs=1e-12)
    assert np.all(np.diff(calibrated[np.argsort(raw)]) >= 0)


def test_log_odds_and_probabilities_are_calibrated_alike() -> None:
    calibration = Calibration(slope=0.7, intercept=-0.3)
    raw = np.array([0.01, 0.2, 0.5, 0.93])
    from_log_odds = 1 / (1 + np.exp(-calibration.apply_log_odds(logit(raw))))
    np.testing.assert_allclose(calibration.apply(raw), from_log_odds, rtol=1e-12)


def test_a_model_no_better_than_chance_is_left_uncalibrated_rather_than_reversed() -> None:
    rng = np.random.default_rng(4)
    raw = rng.random(2_000)
    labels = (rng.random(2_000) < 1 - raw).astype(int)  # the model ranks backwards
    assert fit_platt(labels, raw).is_identity
    assert fit_platt(np.zeros(100, dtype=int), raw[:100]).is_identity


def test_the_stored_form_round_trips_and_a_version_without_one_is_uncalibrated() -> None:
    calibration = Calibration(slope=0.81, intercept=0.12, fitted_rows=6400)
    assert Calibration.from_json(calibration.to_json()) == calibration
    assert Calibration.from_json(None).is_identity
    np.testing.assert_array_equal(Calibration().apply(np.array([0.1, 0.9])), [0.1, 0.9])


def test_reliability_bins_hold_equal_counts_and_the_ece_weighs_them_by_rows() -> None:
    probabilities = np.linspace(0.0, 0.99, 100)
    labels = np.zeros(100, dtype=int)
    bins = reliability_bins(labels, probabilities, bins=10)
    assert [b.rows for b in bins] == [10] * 10
    assert bins[0].mean_predicted == pytest.approx(probabilities[:10].mean())
    assert expected_calibration_error(labels, probabilities) == pytest.approx(
        probabilities.mean())


def test_the_outcome_curve_follows_a_bent_truth_that_platt_scaling_cannot() -> None:
    """A score whose truth has a step (as churn has at a low balance): the curve, fitted on
    labels, gives each served probability its real outcome rate; Platt's line does not."""
    rng = np.random.default_rng(6)
    score = rng.random(40_000)
    truth = np.where(score < 0.7, 0.05 + 0.1 * score, 0.6 + 0.3 * score)
    labels = (rng.random(40_000) < truth).astype(int)
    calibration = fit_platt(labels, score)
    calibration = calibration.with_outcome_curve(labels, calibration.apply(score))
    # (Between two blocks the curve is a straight line: right at the step it blurs.)
    served = calibration.apply(np.array([0.2, 0.5, 0.6, 0.8, 0.95]))
    expected = np.array([0.07, 0.10, 0.11, 0.84, 0.885])
    np.testing.assert_allclose(calibration.expected_outcome(served), expected, atol=0.04)
    assert np.abs(served - expected).max() > 0.15  # the logistic line misses the step
    knots, rates = calibration.outcome_curve
    assert np.all(np.diff(knots) > 0) and np.all(np.diff(rates) > 0)
    # It travels with the version and reads back the same.
    again = Calibration.from_json(calibration.to_json())
    np.testing.assert_array_equal(again.expected_outcome(served),
                                  calibration.expected_outcome(served))
    # Without a curve (an older version), a served probability stands for itself.
    np.testing.assert_array_equal(Calibration().expected_outcome(served), served)
