"""The model: sklearn preprocessing + XGBoost, built from the schema, and its search space.

Only stock sklearn and xgboost classes are used, so any process with those
libraries can load a logged model: the predictor needs none of this code.
"""

from __future__ import annotations

from typing import Any

import optuna
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from core.schema import Schema
from core.task import task_of

# skops (MLflow's default sklearn format) refuses unknown classes unless named.
SKOPS_TRUSTED_TYPES = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier",
                       "xgboost.sklearn.XGBRegressor"]


def build_pipeline(schema: Schema, params: dict[str, Any], seed: int) -> Pipeline:
    """Numbers pass through (NaN is XGBoost's missing value); categories are one-hot encoded.

    An unseen category encodes as all zeros rather than failing, so the model
    itself never breaks on one; whether to accept such a record is the
    predictor's decision, made from the schema.
    """
    preprocessing = ColumnTransformer(
        [
            ("numeric", "passthrough", schema.numeric_features),
            (
                "categorical",
                OneHotEncoder(
                    categories=[list(schema.feature(n).values)
                                for n in schema.categorical_features],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
                schema.categorical_features,
            ),
        ],
        verbose_feature_names_out=False,
    )
    task = task_of(schema)  # XGBClassifier or XGBRegressor, by the schema's task
    return Pipeline([("preprocessing", preprocessing),
                     (task.estimator_step, task.estimator(params, seed))])


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The hyperparameter search space."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=25),
        "max_depth": trial.suggest_int("max_depth", 2, 6),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }
