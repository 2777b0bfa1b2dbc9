"""Live model quality from predictions whose real outcome has arrived."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import precision_score, recall_score, roc_auc_score


@dataclass(frozen=True)
class LiveQuality:
    labels: int
    auc: float | None          # None until both outcomes have been seen
    precision: float | None
    recall: float | None
    error_rate: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def live_quality(window: pd.DataFrame) -> LiveQuality:
    """Quality of the logged decisions on the rows of `window` that have an `actual`."""
    if window.empty or "actual" not in window:
        return LiveQuality(0, None, None, None, None)
    labelled = window[window["actual"].notna()]
    if labelled.empty:
        return LiveQuality(0, None, None, None, None)
    actual = labelled["actual"].astype(int).to_numpy()
    decision = labelled["decision"].astype(int).to_numpy()
    probability = labelled["probability"].astype(float).to_numpy()
    both_outcomes = len(np.unique(actual)) == 2
    return LiveQuality(
        labels=len(labelled),
        auc=float(roc_auc_score(actual, probability)) if both_outcomes else None,
        precision=float(precision_score(actual, decision, zero_division=0)),
        recall=float(recall_score(actual, decision, zero_division=0)),
        error_rate=float((actual != decision).mean()),
    )
