"""Direct Loss Estimation (DLE): a number's error on a window, estimated before its labels.

The method is NannyML's DLE (https://nannyml.readthedocs.io/en/stable/how_it_works/
performance_estimation.html#direct-loss-estimation-dle), written here with XGBoost from
that description.  A second model learns how large the served model's error is from what
is known when it answers -- the row's features and the predicted number -- and the mean of
its predictions over a window is the window's expected error:

- the estimated MAE is the mean predicted |error| (a model of the absolute error);
- the estimated RMSE is the square root of the mean predicted error² (a model of the
  squared error: the mean of squares is what an RMSE is made of, and the square root of
  a mean of absolute errors would be the MAE again).

Both are fitted in the train flow on the out-of-fold rows (each scored by a fold model that
never saw it; never the gate's holdout, whose figures they are compared with), and travel
with the version as two XGBoost model files (core.registry).  The inputs are the
pipeline's own encoding of the features (its preprocessing step) and the prediction.

What it assumes, and so what it cannot see:
- Covariate shift only.  When the inputs move to where the model is known to err more
  (fares booked the day before departure, more volatile), the estimate follows them.  A
  concept change -- the same flights, dearer fares (a fuel surcharge) -- leaves the
  features and the predictions as they were, so the estimate too: only labels show it
  (LiveErrorHigh).
- Rows like the training rows.  Trees predict flat beyond what they saw: inputs far
  outside the training range get the error of its edge.
- The fold models' errors stand for the refit model's.  The served model learnt from all
  the rows (a fifth more than each fold model), so its errors are a little smaller and
  the estimate errs a little high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The files a version carries (MLflow extra_files, next to the reference sample).
ABSOLUTE_FILE = "loss_absolute.json"
SQUARED_FILE = "loss_squared.json"
FILES = (ABSOLUTE_FILE, SQUARED_FILE)
# Small and regularised: it learns a noisy target (one row's error) from a few thousand
# rows, and only its mean over a window is used.
PARAMS = {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.05, "subsample": 0.8,
          "colsample_bytree": 0.8, "min_child_weight": 20.0, "reg_lambda": 5.0}


def _regressor(seed: int) -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(tree_method="hist", n_jobs=2, random_state=seed,
                        objective="reg:squarederror", **PARAMS)


def loss_inputs(encoded: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The loss models' inputs: the encoded features and the prediction, one row each."""
    encoded = np.asarray(encoded, dtype=float)
    predicted = np.asarray(predicted, dtype=float).reshape(-1, 1)
    if len(encoded) != len(predicted):
        raise ValueError(f"{len(encoded)} encoded rows for {len(predicted)} predictions")
    return np.hstack([encoded.reshape(len(predicted), -1), predicted])


@dataclass(frozen=True)
class LossEstimator:
    """The models of a version's absolute and squared error."""

    absolute: Any   # xgboost.XGBRegressor
    squared: Any

    @classmethod
    def fit(cls, encoded: np.ndarray, *, predicted: np.ndarray, actual: np.ndarray,
            seed: int) -> LossEstimator:
        """Fitted on rows whose `predicted` numbers came from models that never saw them
        (out of fold), with their `actual` outcomes."""
        x = loss_inputs(encoded, predicted)
        error = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
        return cls(_regressor(seed).fit(x, np.abs(error)),
                   _regressor(seed).fit(x, error ** 2))

    def estimate(self, encoded: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
        """The window's expected MAE and RMSE (None for an empty window)."""
        if len(predicted) == 0:
            return {"mae": None, "rmse": None}
        x = loss_inputs(encoded, predicted)
        # A row's expected loss is never below zero, whatever a tree's leaf says.
        absolute = np.clip(self.absolute.predict(x), 0.0, None)
        squared = np.clip(self.squared.predict(x), 0.0, None)
        return {"mae": float(absolute.mean()), "rmse": math.sqrt(float(squared.mean()))}

    def save(self, folder: Path) -> list[Path]:
        """Write the two models to `folder`; returns their paths."""
        paths = [folder / ABSOLUTE_FILE, folder / SQUARED_FILE]
        self.absolute.save_model(paths[0])
        self.squared.save_model(paths[1])
        return paths

    @classmethod
    def load(cls, folder: Path) -> LossEstimator | None:
        """The models saved in `folder`; None when it has none (a binary model, or a
        number's version from before DLE)."""
        if not all((folder / name).is_file() for name in FILES):
            return None
        from xgboost import XGBRegressor

        models = []
        for name in FILES:
            model = XGBRegressor()
            model.load_model(folder / name)
            models.append(model)
        return cls(*models)
