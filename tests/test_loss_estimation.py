"""Direct Loss Estimation (core.loss_estimation): a window's error estimated from its
features and predictions, before its labels -- right where the noise is known, following a
shift of the inputs, blind (as documented) to a change of the outcomes alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold, cross_val_predict

from core.loss_estimation import FILES, LossEstimator
from core.schema import Schema, TargetSpec
from core.task import Binary, EstimateLimits, Regression
from orchestration.model import build_pipeline
from simulation.flights import SCENARIOS, generate

LIMITS = EstimateLimits(auc_margin=0.05, max_error_ratio=1.25)


def rows(n: int, seed: int, low: float = 0.0, high: float = 1.0
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A feature x in [low, high), a prediction that is the true mean, and outcomes whose
    noise grows with x (sd 1 + 9x): the error's size is a function of the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, n)
    predicted = 100 + 50 * x
    actual = predicted + rng.normal(0.0, 1.0 + 9.0 * x)
    return x.reshape(-1, 1), predicted, actual


def realised(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    error = actual - predicted
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean()))}


@pytest.fixture(scope="module")
def estimator() -> LossEstimator:
    x, predicted, actual = rows(5000, seed=1)
    return LossEstimator.fit(x, predicted=predicted, actual=actual, seed=0)


def test_the_estimate_of_a_window_like_the_training_rows_is_its_real_error(
        estimator: LossEstimator) -> None:
    x, predicted, actual = rows(5000, seed=2)
    estimate, truth = estimator.estimate(x, predicted), realised(predicted, actual)
    for name in ("mae", "rmse"):
        assert estimate[name] == pytest.approx(truth[name], rel=0.08), (name, estimate, truth)


def test_inputs_moved_to_where_the_noise_is_larger_raise_the_estimate_with_the_error(
        estimator: LossEstimator) -> None:
    calm = estimator.estimate(*rows(2000, seed=3, high=0.3)[:2])
    x, predicted, actual = rows(2000, seed=4, low=0.7)
    rough, truth = estimator.estimate(x, predicted), realised(predicted, actual)
    assert rough["rmse"] > 2.5 * calm["rmse"]
    assert rough["rmse"] == pytest.approx(truth["rmse"], rel=0.12), (rough, truth)
    assert rough["mae"] == pytest.approx(truth["mae"], rel=0.12), (rough, truth)


def test_a_change_of_the_outcomes_alone_is_not_seen(estimator: LossEstimator) -> None:
    x, predicted, actual = rows(2000, seed=5)
    surcharged = actual + 40  # the same inputs, dearer outcomes: a concept change
    estimate = estimator.estimate(x, predicted)
    # It says what the error was before the change, not what it is now.
    assert estimate["rmse"] == pytest.approx(realised(predicted, actual)["rmse"], rel=0.08)
    assert realised(predicted, surcharged)["rmse"] > 2 * estimate["rmse"]


def test_saved_and_loaded_it_estimates_the_same(estimator: LossEstimator,
                                                 tmp_path: Path) -> None:
    assert LossEstimator.load(tmp_path) is None  # a folder without them: a version before
    paths = estimator.save(tmp_path)
    assert sorted(path.name for path in paths) == sorted(FILES)
    loaded = LossEstimator.load(tmp_path)
    x, predicted, _ = rows(500, seed=6)
    assert loaded.estimate(x, predicted) == pytest.approx(estimator.estimate(x, predicted))


def test_an_empty_window_has_no_estimate_and_mismatched_rows_are_refused(
        estimator: LossEstimator) -> None:
    assert estimator.estimate(np.empty((0, 1)), np.empty(0)) == {"mae": None, "rmse": None}
    with pytest.raises(ValueError, match="3 encoded rows for 2 predictions"):
        estimator.estimate(np.zeros((3, 1)), np.zeros(2))


def test_the_task_decides_the_method_and_when_an_estimate_is_too_poor() -> None:
    binary = Binary("churn", TargetSpec())
    number = Regression("price", TargetSpec())
    assert (binary.label_free_method, number.label_free_method) == ("cbpe", "dle")
    assert binary.fit_loss_estimator(None, None, np.zeros(10), np.zeros(10), 0) is None
    reference = {"auc": 0.80, "rmse": 4000.0, "mae": 2800.0}
    assert binary.estimated_shortfall({"auc": 0.76}, reference, LIMITS) is None
    assert "estimated AUC 0.700" in binary.estimated_shortfall({"auc": 0.70}, reference, LIMITS)
    assert number.estimated_shortfall({"rmse": 4900.0, "mae": 3000.0}, reference, LIMITS) is None
    why = number.estimated_shortfall({"rmse": 5600.0, "mae": 3000.0}, reference, LIMITS)
    assert why == "estimated RMSE 5600 > 1.25 x the holdout's 4000"
    assert number.estimated_shortfall({"rmse": 5000.0, "mae": 3500.0}, reference,
                                      LIMITS) is None  # at the limits exactly
    why = number.estimated_shortfall({"rmse": 4000.0, "mae": 3600.0}, reference, LIMITS)
    assert why == "estimated MAE 3600 > 1.25 x the holdout's 2800"
    why = number.estimated_shortfall({"rmse": 5600.0, "mae": 3600.0}, reference, LIMITS)
    assert why == ("estimated RMSE 5600 > 1.25 x the holdout's 4000; "
                   "estimated MAE 3600 > 1.25 x the holdout's 2800")
    # No holdout figure to hold it to (a version from before them): nothing to say.
    assert number.estimated_shortfall({"rmse": 9e9}, {}, LIMITS) is None


def test_the_regression_task_fits_it_on_the_pipelines_encoding_of_the_out_of_fold_rows(
) -> None:
    """Through the task, as the train flow fits it (the pipeline's encoding, its out-of-fold
    numbers), on flight fares: right on fresh fares booked late, where errors are larger.
    (LossEstimator.fit takes `predicted` and `actual` by name: |error| is the same either
    way round, so a swap would only show as a weaker estimate.)"""
    schema = Schema.load("core/schemas/flights.yaml")
    number = Regression(schema.target, schema.target_spec)
    table = generate(4000, seed=7, schema=schema)
    x, y = table[schema.feature_names], table[schema.target].to_numpy(float)
    pipeline = build_pipeline(schema, {"n_estimators": 100, "max_depth": 5}, 0)
    out_of_fold = cross_val_predict(pipeline, x, y, cv=KFold(5, shuffle=True, random_state=0))
    pipeline.fit(x, y)
    estimator = number.fit_loss_estimator(pipeline, x, y, out_of_fold, seed=0)
    # Booked closer to departure: where the fares, and the model's errors, are larger.
    fresh = generate(4000, seed=8, schema=schema, drift=SCENARIOS["late_booking"])
    predicted = pipeline.predict(fresh[schema.feature_names])
    estimate = estimator.estimate(pipeline[:-1].transform(fresh[schema.feature_names]),
                                  predicted)
    truth = realised(predicted, fresh[schema.target].to_numpy(float))
    for name in ("mae", "rmse"):
        assert estimate[name] == pytest.approx(truth[name], rel=0.1), (name, estimate, truth)
