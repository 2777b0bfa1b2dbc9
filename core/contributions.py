"""Each feature's contribution to a tree model's score: XGBoost's own TreeSHAP
(`pred_contribs`), with the model's encoded columns summed back to the feature that owns
them (a one-hot encoded feature owns one column per category).  SHAP values add up, so
the bias and the features' contributions still sum to the score (log-odds).

The predictor explains answers with it (server/fast_scorer.py), the model card ranks
features with it (reporting/model_card.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xgboost


def by_feature(booster: Any, matrix: np.ndarray, owners: Sequence[str],
               features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(bias of each row, contributions of each row by feature in `features` order) for
    the encoded `matrix`, whose column i belongs to feature `owners[i]`."""
    data = xgboost.DMatrix(matrix, missing=np.nan, feature_names=booster.feature_names)
    raw = booster.predict(data, pred_contribs=True)  # one column per input, then the bias
    if raw.shape[1] != len(owners) + 1:
        raise ValueError(f"{raw.shape[1] - 1} encoded columns, {len(owners)} owners")
    position = {name: i for i, name in enumerate(features)}
    summed = np.zeros((matrix.shape[0], len(features)))
    np.add.at(summed.T, [position[owner] for owner in owners], raw[:, :-1].T)
    return raw[:, -1], summed
