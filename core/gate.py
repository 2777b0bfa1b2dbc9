"""The promotion gate: a new version becomes @champion only if it beats the current
champion on the same holdout by the configured margin.  The old champion keeps
@previous, so a rollback is one alias move.  Every decision is written on the
candidate version as tags, so the registry says why a version was or was not
promoted.  The train flow decides and applies it, the model card shows the decision:
it lives here, below both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mlflow import MlflowClient

from core.registry import CHAMPION, PREVIOUS


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reason: str
    candidate_version: str
    candidate_auc: float
    champion_version: str | None
    champion_auc: float | None
    margin: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def decide(
    *,
    candidate_version: str,
    candidate_auc: float,
    champion_version: str | None,
    champion_auc: float | None,
    margin: float,
) -> GateDecision:
    """Promote when there is no champion, or when the candidate's AUC beats it by `margin`."""
    if champion_version is None or champion_auc is None:
        promoted, reason = True, "no champion yet"
    elif candidate_auc >= champion_auc + margin:
        promoted = True
        reason = (f"holdout AUC {candidate_auc:.4f} beats champion v{champion_version} "
                  f"({champion_auc:.4f}) by at least {margin}")
    else:
        promoted = False
        reason = (f"holdout AUC {candidate_auc:.4f} does not beat champion v{champion_version} "
                  f"({champion_auc:.4f}) by {margin}")
    return GateDecision(promoted, reason, candidate_version, candidate_auc, champion_version,
                        champion_auc, margin)


def apply(client: MlflowClient, model_name: str, decision: GateDecision) -> None:
    """Record the decision on the candidate version and, if promoted, move the aliases."""
    tags = {
        "gate.decision": "promoted" if decision.promoted else "rejected",
        "gate.reason": decision.reason,
        "gate.candidate_auc": f"{decision.candidate_auc:.6f}",
        "gate.margin": str(decision.margin),
    }
    if decision.champion_version is not None:
        tags["gate.champion_version"] = decision.champion_version
        tags["gate.champion_auc"] = f"{decision.champion_auc:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(model_name, decision.candidate_version, key, value)
    if not decision.promoted:
        return
    if decision.champion_version is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, decision.champion_version)
    client.set_registered_model_alias(model_name, CHAMPION, decision.candidate_version)
