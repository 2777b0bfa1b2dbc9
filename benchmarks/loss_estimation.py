"""`make bench-estimation` (its regression half): a number's error estimated before the labels
(DLE, core/loss_estimation.py) against the realised error, per window, on flight fares.

The train flow's way on generated fares (simulation/flights.py): a pipeline, its out-of-fold
predictions on the training rows, the models of its error fitted on them.  Then windows of
fresh rows -- 1,000 and 5,000 rows, WINDOWS of each per scenario -- scored by the refit
model, and for each window:

- realised: the MAE and RMSE against the fares that really came;
- oracle: the error the simulator's own process expects for those rows (each row's fare
  drawn OUTCOME_DRAWS times from its known distribution): what a perfect estimate would
  say, the realised figure without the luck of the draw;
- onebox: the estimate the drift exporter exports (no labels);
- NannyML: NannyML 0.13's DLE fitted on the same out-of-fold rows and run on the same
  windows -- the anchor.  It runs in a venv of its own (NANNYML_PYTHON, made by `make
  bench-estimation`: it pins older lightgbm and plotly than onebox's), with usage logging
  off; without it the column says n/a.

Each estimate's error is its mean absolute difference from the realised figure, in % of it
(over the windows), beside the oracle's own: the realised figure's sampling noise, which no
estimate can beat.  Figures, not a pass/fail: docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.intervals import TRAINING_ROWS, fitted_fares
from core.loss_estimation import LossEstimator
from core.schema import Schema
from simulation.demo_tables import demo_table
from simulation.flights import FARE_NOISE, SCENARIOS, log_fare_mean

SIZES = (1_000, 5_000)
WINDOWS = 5
OUTCOME_DRAWS = 400
# new_route is refused at the door (an unknown city), so it has no window to estimate.
ESTIMATED_SCENARIOS = ("none", "late_booking", "business_up", "fuel_surcharge")
NANNYML_SCRIPT = Path(__file__).with_name("nannyml_dle.py")


def oracle(features: pd.DataFrame, predicted: np.ndarray, fare_factor: float,
           seed: int) -> dict[str, float]:
    """The expected MAE and RMSE of `predicted` under the fares' own process."""
    rng = np.random.default_rng(seed)
    mean_log = log_fare_mean(features)[:, None]
    fares = np.round(np.exp(mean_log + rng.normal(0, FARE_NOISE, (len(features),
                                                                     OUTCOME_DRAWS))))
    error = fares * fare_factor - predicted[:, None]
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean()))}


def realised(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    error = actual - predicted
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean()))}


def nannyml_estimates(schema: Schema, reference: pd.DataFrame,
                      windows: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]] | None:
    """NannyML's DLE on the same rows, in its own venv; None when there is none."""
    python = os.environ.get("NANNYML_PYTHON")
    if not python or not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reference.to_csv(folder / "reference.csv", index=False)
        for name, window in windows.items():
            window.to_csv(folder / f"window-{name}.csv", index=False)
        (folder / "features.json").write_text(json.dumps(schema.feature_names))
        done = subprocess.run([python, str(NANNYML_SCRIPT), str(folder)], capture_output=True,
                              text=True, check=False,
                              env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"NannyML's DLE failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(group: list[dict], kind: str, figure: str, real: np.ndarray) -> str:
    """The mean of one kind's figure over a group of windows, and its mean distance from
    the realised, in % of it."""
    if group[0][kind] is None:
        return f"{'n/a':>16}"
    values = np.array([r[kind][figure] for r in group])
    off = float(np.mean(np.abs(values - real) / real))
    return f"{values.mean():>9,.0f} ({off:>4.1%})"


def main() -> None:
    fares = fitted_fares()  # bench-intervals' model: the same fares, folds and refit
    schema, x, y = fares.schema, fares.x, fares.y
    out_of_fold, pipeline = fares.out_of_fold, fares.pipeline
    estimator = LossEstimator.fit(pipeline[:-1].transform(x), predicted=out_of_fold,
                                  actual=y, seed=42)

    rows: list[dict] = []
    windows: dict[str, pd.DataFrame] = {}
    for scenario in ESTIMATED_SCENARIOS:
        for size in SIZES:
            for i in range(WINDOWS):
                seed = 1000 + 100 * SIZES.index(size) + i
                window = demo_table(schema, size, seed, scenario)
                features = window[schema.feature_names]
                predicted = pipeline.predict(features)
                actual = window[schema.target].to_numpy(float)
                name = f"{scenario}-{size}-{i}"
                windows[name] = features.assign(y_pred=predicted, y_true=actual)
                rows.append({
                    "name": name, "scenario": scenario, "rows": size,
                    "realised": realised(actual, predicted),
                    "oracle": oracle(features, predicted, SCENARIOS[scenario].fare_factor,
                                     seed),
                    "onebox": estimator.estimate(pipeline[:-1].transform(features),
                                                 predicted)})
    reference = x.assign(y_pred=out_of_fold, y_true=y)
    nannyml = nannyml_estimates(schema, reference, windows)
    for row in rows:
        row["nannyml"] = None if nannyml is None else nannyml[row["name"]]

    print(f"flight fares: {TRAINING_ROWS:,} training rows (5-fold out-of-fold predictions: "
          f"what both DLEs are fitted on), {WINDOWS} windows per scenario and size")
    print("NannyML 0.13 DLE: " + ("its own venv" if nannyml is not None else
                                  "n/a (NANNYML_PYTHON unset: `make bench-estimation`)"))
    for figure in ("mae", "rmse"):
        print(f"\n{figure.upper()} (INR), mean over the windows; in brackets each estimate's "
              "mean |estimate - realised| in % of the realised")
        print(f"{'scenario':<15} {'rows':>5} {'realised':>9} {'oracle':>16} {'onebox DLE':>16} "
              f"{'NannyML DLE':>16}")
        for scenario in ESTIMATED_SCENARIOS:
            for size in SIZES:
                group = [r for r in rows if r["scenario"] == scenario and r["rows"] == size]
                real = np.array([r["realised"][figure] for r in group])

                cells = " ".join(_cell(group, kind, figure, real)
                                 for kind in ("oracle", "onebox", "nannyml"))
                print(f"{scenario:<15} {size:>5,} {real.mean():>9,.0f} {cells}")


if __name__ == "__main__":
    main()
