"""The promotion gate: a new version becomes @champion only if it beats the current
champion on the same holdout by the configured margin, on the task's metric (AUC for a
binary target, higher is better; RMSE or MAE for a number, lower is better; the margin in
the metric's own units).  The old champion keeps @previous, so a rollback is one alias
move.  Every decision is written on the candidate version as tags, so the registry says
why a version was or was not promoted.  The train flow decides and applies it, the model
card shows the decision: it lives here, below both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mlflow import MlflowClient

from core import registry
from core.task import Metric


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reason: str
    candidate_version: str
    candidate_score: float
    champion_version: str | None
    champion_score: float | None
    margin: float
    metric: str = "auc"
    greater_is_better: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def decide(
    *,
    metric: Metric,
    candidate_version: str,
    candidate_score: float,
    champion_version: str | None,
    champion_score: float | None,
    margin: float,
) -> GateDecision:
    """Promote when there is no champion, or when the candidate beats it by `margin` on
    `metric` (and a champion whose figure could not be computed counts as none)."""
    label = f"holdout {metric.label}"
    if champion_version is None or champion_score is None:
        promoted, reason = True, "no champion yet"
    else:
        promoted = metric.beats(candidate_score, champion_score, margin)
        verb = "beats" if promoted else "does not beat"
        reason = (f"{label} {candidate_score:.4f} {verb} champion v{champion_version} "
                  f"({champion_score:.4f}) by {'at least ' if promoted else ''}{margin} "
                  f"({'higher' if metric.greater_is_better else 'lower'} is better)")
    return GateDecision(promoted, reason, candidate_version, candidate_score, champion_version,
                        champion_score, margin, metric.name, metric.greater_is_better)


def apply(client: MlflowClient, model_name: str, decision: GateDecision) -> None:
    """Record the decision on the candidate version and, if promoted, move the aliases."""
    tags = {
        "gate.decision": "promoted" if decision.promoted else "rejected",
        "gate.reason": decision.reason,
        "gate.metric": decision.metric,
        f"gate.candidate_{decision.metric}": f"{decision.candidate_score:.6f}",
        "gate.margin": str(decision.margin),
    }
    if decision.champion_version is not None:
        tags["gate.champion_version"] = decision.champion_version
        if decision.champion_score is not None:
            tags[f"gate.champion_{decision.metric}"] = f"{decision.champion_score:.6f}"
    registry.record_gate(client, model_name, decision.candidate_version, tags)
    if decision.promoted:
        registry.promote(client, model_name, decision.candidate_version,
                         decision.champion_version)
