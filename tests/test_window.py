"""One window, one decision (monitoring.window): what applies to which version."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.calibration import Calibration
from core.registry import LoadedModel
from core.schema import Schema
from monitoring.drift import DriftPolicy
from monitoring.window import estimate_from_served, policy_for


def version(schema: Schema, **changes: object) -> LoadedModel:
    model = LoadedModel(name="churn-classifier", version="3", path=Path("/nonexistent"),
                        pipeline=None, schema=schema, threshold=0.3)
    return replace(model, **changes)


def test_the_prediction_counts_only_against_an_out_of_sample_reference(schema: Schema) -> None:
    policy = DriftPolicy()
    assert policy.prediction_alarm  # on by default (PREDICTION_DRIFT_ALARM)
    assert policy_for(version(schema, reference_out_of_sample=True), policy).prediction_alarm
    # A version trained before the reference was scored out of sample: its reference
    # holds the model's in-sample scores, more extreme than any new customer's.
    older = policy_for(version(schema), policy)
    assert not older.prediction_alarm
    assert older.false_alarm_rate == policy.false_alarm_rate
    # Switched off by the setting, it stays off whatever the version.
    off = DriftPolicy(prediction_alarm=False)
    assert not policy_for(version(schema, reference_out_of_sample=True), off).prediction_alarm


def test_the_estimate_weighs_served_probabilities_by_the_versions_outcome_curve(
    schema: Schema,
) -> None:
    served = np.array([0.05, 0.1, 0.2, 0.35, 0.6, 0.9])
    plain = estimate_from_served(version(schema), served)
    # A curve saying the high scores come true less often than they claim.
    curve = Calibration(outcome_curve=((0.0, 0.5, 1.0), (0.0, 0.5, 0.6)))
    bent = estimate_from_served(version(schema, calibration=curve), served)
    decided = served >= 0.3
    assert plain.precision == pytest.approx(served[decided].mean())
    assert bent.precision == pytest.approx(curve.expected_outcome(served)[decided].mean())
    assert bent.precision < plain.precision
    assert bent.rows == plain.rows == 6
