"""The task in one place (core.task): a schema declares binary or regression; a table whose
target the task cannot learn from is refused when it is loaded, with a message naming the
file, the field and what is supported; the split, the estimator and the search's metric
follow the task.  Tried as the issue did, with two tables that ship inside scikit-learn:
breast cancer (binary) and diabetes progression (a number)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes

from core.schema import Schema, SchemaError, TargetSpec, model_frame
from core.task import TargetInvalid, task_of
from orchestration.model import build_pipeline
from orchestration.train import split_data, stable_holdout
from simulation.loader import load_dataset

PARAMS = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1}


def table(loader, target: str) -> pd.DataFrame:
    bunch = loader(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
    return frame.rename(columns={"target": target})


def schema_for(frame: pd.DataFrame, target: str, task: str | None = None,
               target_keys: dict | None = None) -> dict:
    """A schema of `frame`: every other column a float feature."""
    return {"name": "t", **({"task": task} if task else {}),
            "target": {"name": target, **(target_keys or {})},
            "features": [{"name": c, "kind": "float"} for c in frame.columns if c != target]}


def write(tmp_path: Path, frame: pd.DataFrame, raw: dict) -> tuple[Path, Path]:
    data, schema = tmp_path / "table.csv", tmp_path / "schema.yaml"
    frame.to_csv(data, index=False)
    schema.write_text(yaml.safe_dump(raw))
    return data, schema


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    return table(load_diabetes, "progression")


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return table(load_breast_cancer, "malignant")


# --- the declaration ---------------------------------------------------------------------------

def test_a_schema_without_a_task_is_binary_and_every_shipped_one_says_so(schema: Schema) -> None:
    assert schema.task == "binary"
    assert Schema.from_dict({"target": {"name": "y"},
                             "features": [{"name": "a", "kind": "float"}]}).task == "binary"
    raw = yaml.safe_load(Path("core/schemas/churn.yaml").read_text())
    assert raw["task"] == "binary"


def test_a_regression_schema_round_trips_with_its_range_unit_and_metric() -> None:
    schema = Schema.from_dict({"task": "regression", "target": {
        "name": "price", "min": 0, "max": 5e5, "unit": "INR", "metric": "mae"},
        "features": [{"name": "a", "kind": "float"}]})
    assert (schema.task, schema.target_spec.unit, schema.target_spec.max) == (
        "regression", "INR", 5e5)
    assert Schema.from_dict(schema.to_dict()) == schema  # it travels with a model version
    assert task_of(schema).search_metric.name == "mae"


@pytest.mark.parametrize(("top", "words"), [
    ({"task": "multiclass"}, r"task: 'multiclass' is not supported; supported: binary, "
                             r"regression"),
    ({"task": "binary", "target": {"unit": "EUR"}}, r"target\.unit: only a regression target"),
    ({"task": "regression", "target": {"metric": "mape"}},
     r"target\.metric: 'mape' is not supported; supported: rmse, mae"),
    ({"task": "regression", "target": {"min": 5, "max": 1}}, r"target\.min \(5\) must be below"),
    ({"task": "regression", "target": {"max": "lots"}}, r"target\.max: must be a finite number"),
    ({"task": "regression", "target": {"currency": "EUR"}}, r"target: unknown keys \['currency'\]"),
])
def test_a_schema_file_declaring_what_is_not_supported_is_refused_naming_the_file_and_field(
    tmp_path: Path, diabetes: pd.DataFrame, top: dict, words: str,
) -> None:
    _, path = write(tmp_path, diabetes.head(5), schema_for(
        diabetes, "progression", top.get("task"), top.get("target")))
    with pytest.raises(SchemaError, match=words) as info:
        Schema.load(path)
    assert str(info.value).startswith(f"{path}: ")


# --- the table's target, checked when it is loaded --------------------------------------------

def test_both_tables_load_under_their_task(tmp_path: Path, cancer: pd.DataFrame,
                                           diabetes: pd.DataFrame) -> None:
    for frame, target, task in ((cancer, "malignant", "binary"),
                                (diabetes, "progression", "regression")):
        data, path = write(tmp_path, frame, schema_for(frame, target, task=task))
        loaded = load_dataset(data, Schema.load(path))
        assert len(loaded) == len(frame)
        np.testing.assert_allclose(loaded[target], frame[target])


@pytest.mark.parametrize(("task", "target_values", "words"), [
    ("binary", lambda n: np.arange(n) % 3, r"3 distinct values \(first \[0, 1, 2\]\): several "
                                           r"classes are not supported"),
    ("binary", lambda n: np.where(np.arange(n) % 2, "yes", "no"), r"text values \['no', 'yes'\]"),
    ("binary", lambda n: np.ones(n, dtype=int), r"every row is 1: a model needs rows of both"),
    ("binary", lambda n: np.arange(n) * 1.5, r"distinct values"),
    ("regression", lambda n: np.where(np.arange(n) == 7, "about 40", "3.5"),
     r"not a number: 'about 40' \(line 9 of the file, after its header\)"),
    ("regression", lambda n: np.full(n, 4.0), r"every row is 4: there is nothing to predict"),
    ("regression", lambda n: np.where(np.arange(n) == 3, np.nan, 1.0 + np.arange(n)),
     r"1 row has no value"),
])
def test_a_target_the_task_cannot_learn_is_refused_at_load_naming_file_field_and_support(
    tmp_path: Path, diabetes: pd.DataFrame, task: str, target_values, words: str,
) -> None:
    frame = diabetes.head(40).copy()
    frame["progression"] = target_values(len(frame))
    data, path = write(tmp_path, frame, schema_for(frame, "progression", task=task))
    with pytest.raises(TargetInvalid, match=words) as info:
        load_dataset(data, Schema.load(path))
    message = str(info.value)
    assert message.startswith(f"{data}: target 'progression' ({task}): ")
    assert message.endswith("supported: task: binary (a target of 0 and 1) or task: "
                            "regression (a numeric target)")


def test_a_regression_target_outside_its_declared_range_is_refused(
    tmp_path: Path, diabetes: pd.DataFrame,
) -> None:
    data, path = write(tmp_path, diabetes, schema_for(
        diabetes, "progression", "regression", {"min": 0, "max": 300}))
    above = int((diabetes["progression"] > 300).sum())
    with pytest.raises(TargetInvalid, match=rf"{above} rows above the declared max 300 "
                                            r"\(first: 3\d\d\)"):
        load_dataset(data, Schema.load(path))


# --- what follows the task: the split, the estimator, the search's metric -------------------

def test_a_numeric_target_splits_with_the_stable_holdout_where_it_died_before(
    tmp_path: Path, diabetes: pd.DataFrame,
) -> None:
    """The issue's failure: a stratified split of a continuous target ("The least populated
    classes in y have only 1 member").  The holdout is still chosen by row."""
    data, path = write(tmp_path, diabetes, schema_for(diabetes, "progression",
                                                      task="regression"))
    schema = Schema.load(path)
    frame = load_dataset(data, schema)
    split = split_data.fn(frame, schema, 42)
    assert len(split.train) + len(split.valid) + len(split.holdout) == len(frame)
    assert split.holdout.index.equals(frame.index[stable_holdout(frame, schema)])
    assert abs(len(split.valid) / (len(split.train) + len(split.valid)) - 0.25) < 0.01


def test_each_task_gets_its_estimator_and_learns_its_table(
    tmp_path: Path, cancer: pd.DataFrame, diabetes: pd.DataFrame,
) -> None:
    found = {}
    for frame, target, task in ((cancer, "malignant", "binary"),
                                (diabetes, "progression", "regression")):
        schema = Schema.from_dict(schema_for(frame, target, task=task))
        split = split_data.fn(frame, schema, 42)
        pipeline = build_pipeline(schema, PARAMS, 42).fit(
            model_frame(schema, split.train), split.train[target].to_numpy())
        step = task_of(schema)
        score = step.search_metric.score(
            split.holdout[target].to_numpy(), step.predict(pipeline, model_frame(
                schema, split.holdout)))
        found[task] = (type(pipeline.named_steps[step.estimator_step]).__name__, score,
                       step.search_metric.direction)
    assert found["binary"][:1] == ("XGBClassifier",) and found["binary"][1] > 0.95  # AUC
    assert found["binary"][2] == "maximize"
    name, rmse, direction = found["regression"]
    assert (name, direction) == ("XGBRegressor", "minimize")
    # Better than predicting the mean (the target's standard deviation is about 77).
    assert rmse < 0.85 * diabetes["progression"].std(), rmse


def _error_figures(errors: np.ndarray) -> dict[str, float]:
    """A window's (or a holdout's) RMSE, MAE and their standard errors, as the task
    computes them from outcomes and predictions."""
    from core.task import error_standard_errors, regression_metrics

    actual = np.zeros_like(errors)
    return {**regression_metrics(actual, errors), **error_standard_errors(actual, errors)}


def test_the_live_error_alarm_keeps_its_false_alarm_rate_and_catches_a_real_rise() -> None:
    """LiveErrorHigh's rule on heavy-tailed errors (a fare's: its size grows with the
    fare): windows whose error is the holdout population's raise it in (nearly) none of
    2,000 windows, even against holdouts whose RMSE came out low by chance -- where the
    bare 1.25 x ratio cried wolf in 2.7% -- and a 50% rise is caught in every window."""
    from core.task import QualityLimits, Regression

    task, limits = Regression("price", TargetSpec()), QualityLimits(0.7, 1.25)
    rng = np.random.default_rng(7)

    def errors(n: int, scale: float = 1.0) -> np.ndarray:
        return scale * rng.normal(0, 1, n) * rng.lognormal(8, 0.8, n)

    clean = bare = caught = 0
    for _ in range(40):  # 40 champions' holdouts of 1,600 rows, 50 windows of 1,000 each
        holdout = _error_figures(errors(1_600))
        for _ in range(50):
            window = _error_figures(errors(1_000))
            clean += task.shortfall(window, holdout, limits) is not None
            bare += window["rmse"] > 1.25 * holdout["rmse"]
        for _ in range(5):
            caught += task.shortfall(_error_figures(errors(1_000, 1.5)), holdout,
                                     limits) is not None
    assert clean <= 4, f"{clean} of 2,000 clean windows alarmed"  # 0.2%
    assert bare >= 40, bare  # what the bare ratio did on the same windows
    assert caught == 200


def test_the_live_error_limit_is_the_ratio_or_the_sampling_error_whichever_is_larger() -> None:
    from core.task import QualityLimits, Regression

    task, limits = Regression("price", TargetSpec()), QualityLimits(0.7, 1.25)
    holdout = {"rmse": 4000.0, "mae": 2800.0, "mse_standard_error": 3e6,
               "mae_standard_error": 60.0}
    live = {"rmse": 5200.0, "mae": 3000.0, "mse_standard_error": 4e6,
            "mae_standard_error": 80.0}
    bounds = task.live_limits(live, holdout, limits)
    # RMSE: the holdout's MSE + 3 x sqrt(4e6² + 3e6²) = 31e6 (5,568 > 1.25 x 4,000);
    # MAE: 2,800 + 3 x sqrt(80² + 60²) = 3,100 < 1.25 x 2,800 = 3,500, so the ratio's.
    assert bounds["rmse"] == pytest.approx(np.sqrt(4000.0 ** 2 + 3 * 5e6))
    assert bounds["mae"] == pytest.approx(3500.0)
    # 5,200 is past 1.25 x 4,000 but not past what chance gives a window this noisy.
    assert task.shortfall(live, holdout, limits) is None
    assert task.shortfall({**live, "rmse": 5600.0, "mae": 3600.0}, holdout, limits) == (
        f"live RMSE 5600 > its limit {bounds['rmse']:.4g} (the holdout's 4000 + 3 standard "
        "errors); live MAE 3600 > its limit 3500 (1.25 x the holdout's 2800)")
    # A version registered before the holdout's standard errors were kept: the bare ratio.
    old = {"rmse": 4000.0, "mae": 2800.0}
    assert task.live_limits(live, old, limits) == {"rmse": 5000.0, "mae": 3500.0}
    assert task.shortfall(live, old, limits) == (
        "live RMSE 5200 > its limit 5000 (1.25 x the holdout's 4000)")
