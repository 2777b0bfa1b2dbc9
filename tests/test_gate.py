"""The promotion gate, on real models in a real (embedded) MLflow registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import gate, registry
from core.schema import Schema
from core.task import Metric
from orchestration.train import (
    Split,
    fit_and_register,
    promote_through_gate,
    split_data,
)
from simulation.loader import load_dataset
from tests.conftest import run_train_flow, settings_for
from tests.factories import write_training_csv

AUC, RMSE = Metric("auc", greater_is_better=True), Metric("rmse", greater_is_better=False)


def test_decide_needs_the_margin() -> None:
    first = gate.decide(metric=AUC, candidate_version="1", candidate_score=0.7,
                        champion_version=None, champion_score=None, margin=0.01)
    assert first.promoted and first.reason == "no champion yet"
    assert not gate.decide(metric=AUC, candidate_version="2", candidate_score=0.805,
                           champion_version="1", champion_score=0.8, margin=0.01).promoted
    assert gate.decide(metric=AUC, candidate_version="2", candidate_score=0.81,
                       champion_version="1", champion_score=0.8, margin=0.01).promoted


def test_an_error_must_fall_by_the_margin_in_the_targets_units() -> None:
    """For a number the gate compares errors: lower is better, the margin in the target's
    unit (a price's RMSE 0.5 lower, say)."""
    kept = gate.decide(metric=RMSE, candidate_version="2", candidate_score=10.7,
                       champion_version="1", champion_score=11.0, margin=0.5)
    assert not kept.promoted
    assert "does not beat champion v1 (11.0000) by 0.5 (lower is better)" in kept.reason
    promoted = gate.decide(metric=RMSE, candidate_version="2", candidate_score=10.4,
                           champion_version="1", champion_score=11.0, margin=0.5)
    assert promoted.promoted and promoted.metric == "rmse"
    # A higher error never wins, whatever the margin's sign would allow for an AUC.
    assert not gate.decide(metric=RMSE, candidate_version="2", candidate_score=11.2,
                           champion_version="1", champion_score=11.0, margin=0.0).promoted


@pytest.mark.slow
class TestGateOnARealRegistry:
    @pytest.fixture(scope="class")
    def home(self, tmp_path_factory: pytest.TempPathFactory, schema: Schema) -> Path:
        home = tmp_path_factory.mktemp("gate-home")
        write_training_csv(settings_for(home).data_path, schema, rows=4000)
        first = run_train_flow(home, trials=3)
        assert first["promoted"] and first["version"] == "1"
        return home

    def aliases(self, home: Path) -> dict[str, str | None]:
        settings = settings_for(home)
        client = registry.connect(settings)
        found = {alias: registry.version_by_alias(client, settings.model_name, alias)
                 for alias in (registry.CHAMPION, registry.PREVIOUS)}
        return {alias: None if v is None else str(v.version) for alias, v in found.items()}

    def test_a_worse_model_is_not_promoted(self, home: Path, schema: Schema) -> None:
        settings = settings_for(home)
        client = registry.connect(settings)
        before = self.aliases(home)  # the class's other test may have promoted already
        split = split_data.fn(load_dataset(settings.data_path, schema), schema, settings.seed)
        # Same holdout, but the candidate learns from shuffled labels: it is worse.
        rng = np.random.default_rng(0)
        noisy = Split(
            train=split.train.assign(churn=rng.permutation(split.train["churn"].to_numpy())),
            valid=split.valid.assign(churn=rng.permutation(split.valid["churn"].to_numpy())),
            holdout=split.holdout,
        )
        params = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}
        run = client.create_run(client.get_experiment_by_name(settings.experiment_name)
                                .experiment_id)
        candidate = fit_and_register.fn(noisy, schema, {"params": params, "valid_auc": 0.5},
                                        settings, run.info.run_id)
        decision = promote_through_gate.fn(client, settings, split, schema, candidate, 0.0)

        assert not decision.promoted
        assert decision.champion_version == before["champion"]
        assert decision.candidate_score < decision.champion_score
        assert self.aliases(home) == before
        tags = client.get_model_version(settings.model_name, candidate["version"]).tags
        assert tags["gate.decision"] == "rejected"
        assert f"does not beat champion v{before['champion']}" in tags["gate.reason"]

    def test_a_model_that_beats_the_margin_is_promoted_and_the_old_one_kept(
        self, home: Path
    ) -> None:
        before = self.aliases(home)["champion"]
        # The same data and seed give the same model; a negative margin lets it through,
        # a positive one does not: both decisions come from the flow.
        kept = run_train_flow(home, trials=2, promotion_margin=0.05)
        assert not kept["promoted"] and self.aliases(home)["champion"] == before
        promoted = run_train_flow(home, trials=2, promotion_margin=-1.0)
        assert promoted["promoted"]
        assert self.aliases(home) == {"champion": promoted["version"], "previous": before}
        settings = settings_for(home)
        tags = registry.connect(settings).get_model_version(
            settings.model_name, promoted["version"]).tags
        assert tags["gate.decision"] == "promoted"
        assert tags["gate.champion_version"] == before


@pytest.mark.slow
def test_rollback_swaps_champion_and_previous(tmp_path: Path, schema: Schema) -> None:
    from operations.rollback import rollback

    write_training_csv(settings_for(tmp_path).data_path, schema, rows=2000)
    run_train_flow(tmp_path, trials=1)
    second = run_train_flow(tmp_path, trials=1, promotion_margin=-1.0)
    assert second["promoted"] and second["version"] == "2"
    settings = settings_for(tmp_path)
    assert rollback(settings) == ("2", "1")
    client = registry.connect(settings)
    assert str(registry.version_by_alias(client, settings.model_name, "champion").version) == "1"
    assert str(registry.version_by_alias(client, settings.model_name, "previous").version) == "2"
    assert rollback(settings) == ("1", "2")  # and forward again
