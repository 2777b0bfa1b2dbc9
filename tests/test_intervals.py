"""A number's prediction interval: split-conformal on out-of-fold residuals, scaled by the
size of the predicted number when that narrows it, holding the real number as often as
its level says on rows it was not fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from core.intervals import Interval, conformal_quantile, fit_interval


def rows(n: int, seed: int, multiplicative: bool) -> tuple[np.ndarray, np.ndarray]:
    """(real, predicted): a model that knows the mean, and noise that is constant or
    grows with the number (a fare's 15%)."""
    rng = np.random.default_rng(seed)
    predicted = np.exp(rng.uniform(np.log(2_000), np.log(80_000), n))
    noise = predicted * rng.normal(0, 0.15, n) if multiplicative else rng.normal(0, 3_000, n)
    return predicted + noise, predicted


def test_the_quantile_is_the_conformal_rank() -> None:
    scores = np.arange(1.0, 10.0)  # 9 scores: rank ceil(10 x level)
    assert conformal_quantile(scores, 0.9) == 9.0
    assert conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(scores, 0.99) == 9.0  # past n: the largest


@pytest.mark.parametrize(("multiplicative", "scaled"), [(False, False), (True, True)])
def test_coverage_on_fresh_rows_is_the_level_and_the_better_kind_is_chosen(
        multiplicative: bool, scaled: bool) -> None:
    y, predicted = rows(4_000, 1, multiplicative)
    fresh_y, fresh_predicted = rows(40_000, 2, multiplicative)
    for level in (0.8, 0.9, 0.95):
        interval, widths = fit_interval(y, predicted, level)
        assert (interval.scale is not None) is scaled, widths
        coverage, width = interval.coverage_and_width(fresh_y, fresh_predicted)
        assert abs(coverage - level) <= 0.02, (level, coverage)
    if scaled:  # what chose it: the scaled interval scores far better
        assert widths["score_scaled"] < 0.8 * widths["score_constant"]


def test_a_scaled_interval_grows_with_the_number() -> None:
    y, predicted = rows(4_000, 3, multiplicative=True)
    interval, _ = fit_interval(y, predicted, 0.9)
    low, high = interval.bounds(np.array([3_000.0, 60_000.0]))
    assert (high - low)[1] > 10 * (high - low)[0]
    assert (low < [3_000.0, 60_000.0]).all() and (high > [3_000.0, 60_000.0]).all()


def test_it_travels_as_json_and_a_level_outside_0_1_is_refused() -> None:
    y, predicted = rows(1_000, 4, multiplicative=True)
    interval, _ = fit_interval(y, predicted, 0.9)
    assert Interval.from_json(interval.to_json()) == interval
    for level in (0.0, 1.0, 90):
        with pytest.raises(ValueError, match="between 0 and 1"):
            fit_interval(y, predicted, level)


def test_the_interval_stays_inside_the_targets_declared_range() -> None:
    """A constant width around a small number would reach below 0 INR: clipped to the
    declared range, where every real value lies (feedback outside it is refused)."""
    y, predicted = rows(2_000, 5, multiplicative=False)  # +-3,000 around 2,000-80,000
    interval, _ = fit_interval(y, predicted, 0.9, floor=500.0, ceiling=100_000.0)
    low, high = interval.bounds(np.array([1_000.0, 99_000.0]))
    assert low[0] == 500.0 and high[1] == 100_000.0
    assert Interval.from_json(interval.to_json()) == interval
    unclipped, _ = fit_interval(y, predicted, 0.9)
    assert unclipped.bounds(np.array([1_000.0]))[0][0] < 0
