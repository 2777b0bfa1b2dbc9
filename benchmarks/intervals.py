"""`make bench-intervals`: how the served interval of a number does on flight fares.

The train flow's way, on generated fares (simulation/flights.py, multiplicative noise):
a pipeline's out-of-fold predictions on the training rows, the interval fitted on them
(core/intervals.py: constant, or scaled by the predicted number when its interval score
is lower), and each kind's coverage and mean width on a holdout of fresh rows from the
same process -- and on a drifted one (fuel surcharge: every fare 15% dearer), where no
interval fitted before the change can hold its level.  Figures, not a pass/fail: the
docs/benchmarks.md quotes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, cross_val_predict

from core.intervals import _constant, fit_interval
from core.schema import Schema
from orchestration.model import build_pipeline
from simulation.demo_tables import demo_table

SCHEMA = "core/schemas/flights.yaml"
PARAMS = {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.1}
TRAINING_ROWS, HOLDOUT_ROWS = 8_000, 4_000


@dataclass(frozen=True)
class FittedFares:
    """A fare model fitted the train flow's way, for the flight benchmarks."""

    schema: Schema
    x: pd.DataFrame
    y: np.ndarray
    out_of_fold: np.ndarray  # each training row's, from the fold model that never saw it
    pipeline: Any            # refit on every training row


def fitted_fares() -> FittedFares:
    """TRAINING_ROWS generated fares, their 5-fold out-of-fold predictions, and the
    pipeline refit on all of them."""
    schema = Schema.load(SCHEMA)
    training = demo_table(schema, TRAINING_ROWS, 1)
    x, y = training[schema.feature_names], training[schema.target].to_numpy(float)
    pipeline = build_pipeline(schema, PARAMS, 42)
    out_of_fold = cross_val_predict(pipeline, x, y, cv=KFold(5, shuffle=True, random_state=0))
    return FittedFares(schema, x, y, out_of_fold, pipeline.fit(x, y))


def main() -> None:
    fares = fitted_fares()
    schema, y, out_of_fold, pipeline = fares.schema, fares.y, fares.out_of_fold, fares.pipeline
    print(f"flight fares: {TRAINING_ROWS:,} training rows (5-fold out-of-fold predictions), "
          f"{HOLDOUT_ROWS:,} fresh rows per holdout")
    print(f"{'level':>5}  {'holdout':<15} {'served kind':<11} {'coverage':>8} {'width':>8}   "
          f"{'constant: coverage':>18} {'width':>8}")
    for scenario in ("none", "fuel_surcharge"):
        holdout = demo_table(schema, HOLDOUT_ROWS, 2, scenario)
        predicted = pipeline.predict(holdout[schema.feature_names])
        real = holdout[schema.target].to_numpy(float)
        for level in (0.8, 0.9, 0.95):
            served, _ = fit_interval(y, out_of_fold, level, floor=schema.target_spec.min,
                                     ceiling=schema.target_spec.max)
            coverage, width = served.coverage_and_width(real, predicted)
            constant = _constant(y - out_of_fold, level).coverage_and_width(real, predicted)
            kind = "scaled" if served.scale else "constant"
            print(f"{level:>5.2f}  {scenario:<15} {kind:<11} {coverage:>8.3f} {width:>8,.0f}   "
                  f"{constant[0]:>18.3f} {constant[1]:>8,.0f}")


if __name__ == "__main__":
    main()
