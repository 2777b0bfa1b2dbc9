"""A window's quality estimated before its labels arrive -- by the task's method
(core.task `label_free_method`), the figures the monitoring exports, reports and alerts on:

- "cbpe", a binary model: its expected AUC, precision and recall from the calibrated
  probabilities it served (monitoring.cbpe);
- "dle", a number: its expected MAE and RMSE from the models of its error that travel with
  the version (core.loss_estimation).

Outcomes arrive weeks late, or never; the estimate is ready with the window.  Neither
method sees a concept change (the same inputs, other outcomes): only labels do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class EstimatedQuality:
    rows: int
    # CBPE's (a binary model).  auc: None when the window is empty or one class is
    # impossible; precision: when no row is decided positive; recall: when no positive is
    # expected (all p = 0).
    auc: float | None = None
    precision: float | None = None
    recall: float | None = None
    # DLE's (a number).  None: an empty window, or a version from before DLE.
    mae: float | None = None
    rmse: float | None = None

    @classmethod
    def none(cls) -> EstimatedQuality:
        """No estimate (a version that carries nothing to make one with): of no rows."""
        return cls(0)

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    def figures(self) -> dict[str, float]:
        """The figures it has, by name (auc, precision, recall; or mae, rmse)."""
        return {f.name: value for f in fields(self)
                if f.name != "rows" and (value := getattr(self, f.name)) is not None}
