"""Live model quality from predictions whose real outcome has arrived.

The figures are the task's (core.task `live_figures`): AUC, precision, recall and error
rate of a binary model's logged decisions; RMSE and MAE of a regression model's numbers,
how often its intervals held the real number, and those errors' standard errors.
A figure the task does not have, or cannot have yet (an AUC before both outcomes were
seen), is None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import pandas as pd

from core.task import Task


@dataclass(frozen=True)
class LiveQuality:
    labels: int
    auc: float | None = None          # None until both outcomes have been seen
    precision: float | None = None
    recall: float | None = None
    error_rate: float | None = None
    rmse: float | None = None
    mae: float | None = None
    # A number's: the share of labelled rows whose real value was inside the answered
    # interval (None: no row of the window was answered with one).
    interval_coverage: float | None = None
    # A number's: the standard errors of the window's mean squared and mean absolute
    # error -- the sampling error LiveErrorHigh allows (core.task live_error_limits).
    mse_standard_error: float | None = None
    mae_standard_error: float | None = None

    @classmethod
    def figure_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "labels")

    def figures(self) -> dict[str, float]:
        """The figures this window has."""
        return {name: value for name in self.figure_names()
                if (value := getattr(self, name)) is not None}

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def live_quality(window: pd.DataFrame, task: Task) -> LiveQuality:
    """Quality of the logged predictions on the rows of `window` that have an `actual`."""
    if window.empty or "actual" not in window:
        return LiveQuality(0)
    labelled = window[window["actual"].notna()]
    if labelled.empty:
        return LiveQuality(0)
    return LiveQuality(len(labelled), **task.live_figures(labelled))
