"""Data drift of a window of logged predictions against the champion's reference sample.

Evidently 0.7 computes one `ValueDrift` metric per column (the method depends
on the data: K-S up to 1,000 rows, normed Wasserstein / Jensen-Shannon above)
and its tests say which columns drifted.  We report the share of drifted
*features* ourselves: Evidently's dataset-level flag (share >= 0.5) misses
realistic drift (see STACK-NOTES), and the model's output column must not count
as a feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.registry import PREDICTION_COLUMN
from core.schema import Schema


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    features: dict[str, ColumnDrift]
    prediction: ColumnDrift | None
    current_rows: int
    reference_rows: int
    snapshot: Any = field(repr=False, compare=False)

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, col in self.features.items() if col.drifted]

    @property
    def share(self) -> float:
        """Share of the schema's features whose drift test failed."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "drift_share": self.share,
            "drifted_features": self.drifted_features,
            "prediction_drift": None if self.prediction is None else {
                "score": self.prediction.score, "drifted": self.prediction.drifted,
                "method": self.prediction.method},
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "features": {name: {"score": c.score, "threshold": c.threshold,
                                "method": c.method, "drifted": c.drifted}
                         for name, c in self.features.items()},
        }


def _dataset(frame: pd.DataFrame, schema: Schema, with_prediction: bool) -> Any:
    from evidently import DataDefinition, Dataset

    numeric = list(schema.numeric_features)
    columns = [*schema.feature_names]
    if with_prediction:
        numeric.append(PREDICTION_COLUMN)
        columns.append(PREDICTION_COLUMN)
    data = frame[columns].copy()
    for name in schema.numeric_features:
        data[name] = pd.to_numeric(data[name], errors="coerce").astype("float64")
    for name in schema.categorical_features:
        data[name] = data[name].astype(object)
    definition = DataDefinition(numerical_columns=numeric,
                                categorical_columns=schema.categorical_features)
    return Dataset.from_pandas(data, data_definition=definition)


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema) -> DriftResult:
    """Evidently's per-column drift of `current` against `reference`.

    Both frames hold the schema's features; when both also have a `prediction`
    column (the model's probability), its drift is reported as prediction drift.
    """
    # evidently takes ~3.5 s to import: only the processes that compute drift pay it.
    from evidently import Report
    from evidently.presets import DataDriftPreset

    if current.empty:
        raise ValueError("the current window is empty: no predictions to compare")
    with_prediction = PREDICTION_COLUMN in reference and PREDICTION_COLUMN in current
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=_dataset(current, schema, with_prediction),
        reference_data=_dataset(reference, schema, with_prediction),
    )
    result = snapshot.dict()
    failed_metric_ids = {
        test["metric_config"]["metric_id"]
        for test in result["tests"]
        if test.get("status") == "FAIL"
    }
    columns: dict[str, ColumnDrift] = {}
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column = config["column"]
        columns[column] = ColumnDrift(
            column=column,
            method=str(config.get("method")),
            score=float(metric["value"]),
            threshold=float(config.get("threshold")),
            drifted=metric["id"] in failed_metric_ids,
        )
    return DriftResult(
        features={name: columns[name] for name in schema.feature_names},
        prediction=columns.get(PREDICTION_COLUMN),
        current_rows=len(current),
        reference_rows=len(reference),
        snapshot=snapshot,
    )
