"""Scoring without the per-call overhead of pandas and sklearn.

The fitted pipeline is `ColumnTransformer(numeric passthrough, OneHotEncoder)`
followed by an `XGBClassifier`.  On a one-row DataFrame the ColumnTransformer
costs ~3 ms a call; here its fitted state (column order, one-hot categories) is
read once, each validated record becomes a row of a numpy matrix directly, and
the booster's `inplace_predict` scores it.  The result is the probability the
pipeline's `predict_proba` gives (a test holds them equal to 1e-6), at a small
fraction of the cost.

Pipelines of another shape are not guessed at: `FastScorer.from_pipeline`
returns None and the predictor uses the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from xgboost import XGBClassifier

from core.schema import Schema


@dataclass(frozen=True)
class FastScorer:
    numeric: tuple[tuple[str, int], ...]                 # (feature, matrix column)
    categorical: tuple[tuple[str, dict[str, int]], ...]  # (feature, value -> matrix column)
    width: int
    booster: Any

    @classmethod
    def from_pipeline(cls, pipeline: Any, schema: Schema) -> FastScorer | None:
        """A scorer equivalent to `pipeline.predict_proba(...)[:, 1]`, or None if the
        pipeline is not the shape this module knows."""
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            return None
        transformer, classifier = pipeline.steps[0][1], pipeline.steps[1][1]
        if not isinstance(transformer, ColumnTransformer) or not isinstance(
            classifier, XGBClassifier
        ):
            return None
        if classifier.n_classes_ != 2 or not _missing_is_nan(classifier):
            return None
        numeric: list[tuple[str, int]] = []
        categorical: list[tuple[str, dict[str, int]]] = []
        position = 0
        for _name, step, columns in transformer.transformers_:
            if step == "drop" or len(columns) == 0:
                continue
            if _is_passthrough(step):
                for column in columns:
                    if schema.feature(column).is_categorical:
                        return None
                    numeric.append((column, position))
                    position += 1
            elif isinstance(step, OneHotEncoder):
                if step.handle_unknown != "ignore" or step.drop_idx_ is not None:
                    return None
                for column, values in zip(columns, step.categories_, strict=True):
                    categorical.append(
                        (column, {str(v): position + i for i, v in enumerate(values)}))
                    position += len(values)
            else:
                return None
        if position != _output_width(transformer):
            return None
        return cls(tuple(numeric), tuple(categorical), position, classifier.get_booster())

    def matrix(self, records: Sequence[dict[str, Any]]) -> np.ndarray:
        """Validated records as the model's input matrix (NaN is missing, as in training)."""
        out = np.zeros((len(records), self.width), dtype=np.float64)
        for row, record in zip(out, records, strict=True):
            for name, column in self.numeric:
                value = record[name]
                row[column] = np.nan if value is None else value
            for name, columns in self.categorical:
                column = columns.get(record[name])
                if column is not None:  # an unseen category encodes as all zeros
                    row[column] = 1.0
        return out

    def predict_proba(self, records: Sequence[dict[str, Any]]) -> np.ndarray:
        """The probability of the positive class for each record."""
        return self.booster.inplace_predict(self.matrix(records), missing=np.nan)


def _is_passthrough(step: Any) -> bool:
    # A fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer.
    if isinstance(step, str):
        return step == "passthrough"
    return isinstance(step, FunctionTransformer) and step.func is None


def _missing_is_nan(classifier: XGBClassifier) -> bool:
    missing = classifier.get_params().get("missing", np.nan)
    return missing is None or (isinstance(missing, float) and np.isnan(missing))


def _output_width(transformer: ColumnTransformer) -> int:
    return len(transformer.get_feature_names_out())
