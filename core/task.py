"""The task -- binary classification or regression -- decided in one place.

The schema declares the task (`task: binary | regression`, core.schema.TargetSpec); what
differs by it is here, behind one interface, and the rest of the code asks `task_of(schema)`
instead of branching on the task's name:

- what a valid target column is, checked when a table is loaded (a message naming the
  file, the field and what is supported, never a library's traceback from a flow);
- the estimator at the end of the pipeline (XGBClassifier or XGBRegressor) and its step;
- the split's stratification (only with classes) and the cross-fitting folds;
- the search's metric and which way is better.

Built so far: these.  Registering, the gate, serving, the log, live quality and the pages
for a regression target come next (issue 25's closing note says what is left).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.schema import Schema, TargetSpec

SUPPORTED = ("supported: task: binary (a target of 0 and 1) or task: regression "
             "(a numeric target)")


class TaskNotBuilt(RuntimeError):
    """A stage of the loop that does not yet handle the schema's task (said at once, not
    as a traceback from deep inside it)."""


class TargetInvalid(ValueError):
    """A table's target column does not fit the schema's task; the message names the file,
    the field and what is supported."""


@dataclass(frozen=True)
class Metric:
    """A figure a model is searched and judged on."""

    name: str
    greater_is_better: bool

    def score(self, y_true: np.ndarray, predicted: np.ndarray) -> float:
        from sklearn.metrics import mean_absolute_error, roc_auc_score, root_mean_squared_error

        scorer = {"auc": roc_auc_score, "rmse": root_mean_squared_error,
                  "mae": mean_absolute_error}[self.name]
        return float(scorer(y_true, predicted))

    @property
    def direction(self) -> str:
        """Optuna's word for the way the search goes."""
        return "maximize" if self.greater_is_better else "minimize"


class Task(ABC):
    """What differs between a binary and a regression target."""

    name: str
    # The pipeline's last step, by name (a model version's pipeline keeps it).
    estimator_step: str
    search_metric: Metric

    def __init__(self, target: str, spec: TargetSpec):
        self.target = target
        self.spec = spec

    @abstractmethod
    def check_target(self, column: pd.Series, where: str) -> pd.Series:
        """The target column in its canonical dtype, or TargetInvalid naming `where` (the
        file), the field and what is supported."""

    @abstractmethod
    def estimator(self, params: dict[str, Any], seed: int) -> Any:
        """The XGBoost estimator with the search's `params`."""

    @abstractmethod
    def stratify(self, y: pd.Series) -> pd.Series | None:
        """What a train/validation split keeps in proportion (None: nothing)."""

    @abstractmethod
    def folds(self, seed: int, n_splits: int) -> Any:
        """The cross-fitting folds (a scikit-learn splitter)."""

    @abstractmethod
    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """What the search metric scores: the positive class's probability, or the number."""

    @abstractmethod
    def check_trainable(self) -> None:
        """Nothing, or TaskNotBuilt: the train flow asks before it loads anything."""

    def _invalid(self, where: str, problem: str) -> TargetInvalid:
        return TargetInvalid(f"{where}: target {self.target!r} ({self.name}): {problem}; "
                             f"{SUPPORTED}")


class Binary(Task):
    name = "binary"
    estimator_step = "classifier"
    search_metric = Metric("auc", greater_is_better=True)

    def check_target(self, column: pd.Series, where: str) -> pd.Series:
        present = column.dropna()
        if len(present) < len(column):
            raise self._invalid(where, _rows(len(column) - len(present), "no value"))
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.isna().any():
            text = sorted(map(str, present[numbers.isna()].unique()))[:5]
            raise self._invalid(where, f"text values {text}: a binary target is 0 or 1 "
                                "(map the classes to 0 and 1 before training)")
        values = sorted(numbers.unique().tolist())
        if len(values) > 2:
            raise self._invalid(where, f"{len(values)} distinct values (first {values[:5]}): "
                                "several classes are not supported")
        if not set(values) <= {0, 1}:
            raise self._invalid(where, f"values {values}: a binary target is 0 or 1")
        if len(values) < 2:
            raise self._invalid(where, f"every row is {values[0]:g}: a model needs rows of "
                                "both 0 and 1")
        return numbers.astype(int)

    def check_trainable(self) -> None:
        return None  # every stage of the loop handles a binary target

    def estimator(self, params: dict[str, Any], seed: int) -> Any:
        from xgboost import XGBClassifier

        return XGBClassifier(tree_method="hist", n_jobs=2, random_state=seed,
                             eval_metric="auc", **params)

    def stratify(self, y: pd.Series) -> pd.Series:
        return y

    def folds(self, seed: int, n_splits: int) -> Any:
        from sklearn.model_selection import StratifiedKFold

        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(x)[:, 1]


class Regression(Task):
    name = "regression"
    estimator_step = "regressor"

    # XGBoost's objective for each search metric: the loss the trees fit is the error
    # the search judges them on.
    OBJECTIVES = {"rmse": "reg:squarederror", "mae": "reg:absoluteerror"}

    def __init__(self, target: str, spec: TargetSpec):
        super().__init__(target, spec)
        self.search_metric = Metric(spec.metric or "rmse", greater_is_better=False)

    def check_trainable(self) -> None:
        raise TaskNotBuilt(
            "task: regression: the schema, the table's target, the split and the search "
            "handle a numeric target; registering a regressor, the gate and serving it do "
            "not yet, so the train flow stops here rather than fail midway")

    def check_target(self, column: pd.Series, where: str) -> pd.Series:
        present = column.dropna()
        if len(present) < len(column):
            raise self._invalid(where, _rows(len(column) - len(present), "no value"))
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.isna().any():
            bad = present[numbers.isna()]
            raise self._invalid(where, f"not a number: {str(bad.iloc[0])!r} (line "
                                f"{bad.index[0] + 2} of the file, after its header); a "
                                "regression target is numeric")
        numbers = numbers.astype(float)
        if not np.isfinite(numbers).all():
            raise self._invalid(where, "infinite values; a regression target is finite")
        if numbers.nunique() < 2:
            raise self._invalid(where, f"every row is {numbers.iloc[0]:g}: there is nothing "
                                "to predict")
        for bound, outside, word in ((self.spec.min, numbers < (self.spec.min or 0), "below"),
                                     (self.spec.max, numbers > (self.spec.max or 0), "above")):
            if bound is not None and outside.any():
                raise self._invalid(where, f"{_rows(int(outside.sum()), word)} the declared "
                                    f"{'min' if word == 'below' else 'max'} {bound:g} "
                                    f"(first: {numbers[outside].iloc[0]:g})")
        return numbers

    def estimator(self, params: dict[str, Any], seed: int) -> Any:
        from xgboost import XGBRegressor

        return XGBRegressor(tree_method="hist", n_jobs=2, random_state=seed,
                            objective=self.OBJECTIVES[self.search_metric.name],
                            eval_metric=self.search_metric.name, **params)

    def stratify(self, y: pd.Series) -> None:
        return None  # a continuous target has no classes to keep in proportion

    def folds(self, seed: int, n_splits: int) -> Any:
        from sklearn.model_selection import KFold

        return KFold(n_splits=n_splits, shuffle=True, random_state=seed)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict(x)


def _rows(count: int, what: str) -> str:
    """"1 row has no value", "3 rows have no value"; "1 row above", "3 rows above"."""
    rows = "1 row" if count == 1 else f"{count} rows"
    if what == "no value":
        return f"{rows} {'has' if count == 1 else 'have'} no value"
    return f"{rows} {what}"


TASKS: dict[str, type[Task]] = {"binary": Binary, "regression": Regression}


def task_of(schema: Schema) -> Task:
    """The schema's task: the one place that reads its name."""
    return TASKS[schema.task](schema.target, schema.target_spec)
