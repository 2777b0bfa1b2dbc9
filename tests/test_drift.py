"""The drift alarm: quiet on clean traffic, loud on each injected drift, naming what moved.

Windows of 300 predictions are the smallest the alarm is built for.  The
numbers behind the thresholds (how often each holds, over thousands of windows)
come from `python -m benchmarks.fidelity`; these tests pin the behaviour
on fixed seeds.
"""

from __future__ import annotations

import pandas as pd
import pytest

from core import registry
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from core.settings import Settings, SettingsError
from monitoring.drift import (
    MIN_CONDITIONAL_R2,
    ColumnDrift,
    ConditionalModel,
    DriftPolicy,
    DriftResult,
    compute_drift,
    conditional_column,
    drift_alarm,
    p_values,
    pooled_contingency,
)
from monitoring.quality import live_quality
from simulation.generator import SCENARIOS, generate

SMALLEST_WINDOW = 300


def logged_window(champion: registry.LoadedModel, rows: int, seed: int,
                  scenario: str = "none") -> pd.DataFrame:
    """Traffic as the prediction log holds it once every outcome has arrived."""
    frame = generate(rows, seed, SCENARIOS[scenario], champion.schema)
    probability = champion.predict_proba(model_frame(champion.schema, frame))
    frame[PREDICTION_COLUMN] = probability
    frame["probability"] = probability
    frame["decision"] = (probability >= champion.threshold).astype(int)
    frame["actual"] = frame[champion.schema.target]
    return frame


@pytest.mark.slow
def test_twenty_clean_windows_of_300_raise_no_alarm(champion: registry.LoadedModel) -> None:
    policy = DriftPolicy()
    reference = champion.reference()
    raised = []
    for seed in range(1000, 1020):
        window = logged_window(champion, SMALLEST_WINDOW, seed)
        alarm = drift_alarm(compute_drift(reference, window, champion.schema, policy),
                            live_quality(window), policy)
        if alarm.detected:
            raised.append((seed, alarm.reason))
    assert raised == []


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "rows"), [
    ("older_customers", SMALLEST_WINDOW),
    ("economic_shift", SMALLEST_WINDOW),
    ("premium_cards", SMALLEST_WINDOW),
    ("no_divorced", SMALLEST_WINDOW),
    # +20% credit limits is a 0.26-sd shift of log(limit) but 0.33 sd of what the other
    # features leave unexplained: its own test catches a 300-row window about 2 times in
    # 3, the conditional one nearly always (benchmarks.fidelity).
    ("credit_limit_up", SMALLEST_WINDOW),
])
def test_a_covariate_drift_is_detected_naming_the_features_that_moved(
    champion: registry.LoadedModel, scenario: str, rows: int
) -> None:
    window = logged_window(champion, rows, seed=2024, scenario=scenario)
    drift = compute_drift(champion.reference(), window, champion.schema)
    changed = SCENARIOS[scenario].changed_features

    assert drift.drift_detected
    assert drift.summary()["drift_detected"] is True
    if scenario == "credit_limit_up":
        # Too small a move for the limits' own test at 300 rows on this seed; what
        # income and card do not explain moved: a drifted relation.
        assert "credit_limit | others" in drift.drifted_relations
        assert set(drift.drifted_features) <= changed
        return
    assert set(drift.drifted_features) == changed
    assert drift.share == pytest.approx(len(changed) / len(champion.schema.feature_names))


@pytest.mark.slow
def test_a_rise_in_credit_limits_shows_in_what_income_and_card_do_not_explain(
    champion: registry.LoadedModel,
) -> None:
    reference = champion.reference()
    conditional = ConditionalModel.fit(reference, champion.schema)
    assert "credit_limit" in conditional.fits and "credit_limit" in conditional.log_scale
    assert conditional.r_squared["credit_limit"] >= MIN_CONDITIONAL_R2
    # Features nothing else explains get no second test (no budget spent on them).
    assert "total_revolving_bal" not in conditional.fits
    raised = p_values(reference, logged_window(champion, SMALLEST_WINDOW, 11,
                                               "credit_limit_up"), champion.schema,
                      conditional=conditional)
    clean = p_values(reference, logged_window(champion, SMALLEST_WINDOW, 11),
                     champion.schema, conditional=conditional)
    column = conditional_column("credit_limit")
    assert raised[column] < raised["credit_limit"]  # the residual test sees more
    assert raised[column] < DriftPolicy().false_alarm_rate / len(raised)
    assert clean[column] > 0.01


@pytest.mark.slow
def test_a_category_the_reference_never_saw_is_drift(champion: registry.LoadedModel) -> None:
    # The predictor refuses such rows (422); were they logged, the chi-square must see them.
    window = logged_window(champion, SMALLEST_WINDOW, seed=7, scenario="new_card_category")
    assert (window["card_category"] == "titanium").any()

    drift = compute_drift(champion.reference(), window, champion.schema)

    assert drift.drifted_features == ["card_category"]


@pytest.mark.slow
def test_a_concept_change_raises_the_alarm_through_live_quality_not_input_drift(
    champion: registry.LoadedModel,
) -> None:
    policy = DriftPolicy()
    reference = champion.reference()
    changed = logged_window(champion, SMALLEST_WINDOW, seed=31, scenario="concept_change")
    clean = logged_window(champion, SMALLEST_WINDOW, seed=31)

    drift = compute_drift(reference, changed, champion.schema, policy)
    alarm = drift_alarm(drift, live_quality(changed), policy)

    # Same inputs, so the same predictions: only the outcomes tell.
    assert not drift.drift_detected
    assert alarm.detected and alarm.quality_degraded and not alarm.data_drift
    assert "live AUC" in alarm.reason
    assert not drift_alarm(compute_drift(reference, clean, champion.schema, policy),
                           live_quality(clean), policy).detected
    # Too few labels yet: no verdict on quality.
    unlabelled = changed.assign(actual=[*changed["actual"][:policy.min_labels - 1],
                                        *[None] * (len(changed) - policy.min_labels + 1)])
    assert not drift_alarm(drift, live_quality(unlabelled), policy).detected


def _result(drifted: list[str], *, prediction_drifted: bool = False,
            prediction_alarm: bool = False, share_threshold: float = 0.0,
            features: int = 11) -> DriftResult:
    names = [f"f{i}" for i in range(features - len(drifted))] + drifted
    column = lambda name, hit: ColumnDrift(name, "test", 0.0 if hit else 0.5, 0.01, hit)  # noqa: E731
    return DriftResult(features={n: column(n, n in drifted) for n in names},
                       prediction=column(PREDICTION_COLUMN, prediction_drifted),
                       current_rows=300, reference_rows=5000, snapshot=None,
                       share_threshold=share_threshold, prediction_alarm=prediction_alarm)


def test_one_drifted_feature_is_enough_by_default() -> None:
    assert not _result([]).drift_detected
    assert _result(["credit_limit"]).drift_detected
    assert _result(["credit_limit"]).effective_share_threshold == pytest.approx(1 / 11)


def test_prediction_drift_counts_only_when_switched_on() -> None:
    # The reference's predictions are in-sample: reported, but no alarm by default.
    assert not _result([], prediction_drifted=True).drift_detected
    drifted = _result([], prediction_drifted=True, prediction_alarm=True)
    assert drifted.drift_detected
    assert drifted.reasons() == ["prediction drift (p=0)"]


def test_a_share_threshold_asks_for_more_features() -> None:
    assert not _result(["credit_limit"], share_threshold=0.2).drift_detected
    assert _result(["credit_limit", "customer_age", "gender"],
                   share_threshold=0.2).drift_detected
    assert "drift share 0.27" in _result(["a", "b", "c"], share_threshold=0.2).reasons()[0]


def test_rare_and_unseen_categories_are_pooled_until_expected_five_times() -> None:
    reference = pd.Series(["blue"] * 930 + ["silver"] * 55 + ["gold"] * 11 + ["platinum"] * 4)
    current = pd.Series(["blue"] * 250 + ["silver"] * 20 + ["titanium"] * 30)

    table = pooled_contingency(reference, current)

    # 300 rows: gold (3.3 expected) and platinum (1.2) are too rare alone, and with the
    # unseen titanium (0) still under 5, so silver (16.5) joins them; blue stays alone.
    assert table.tolist() == [[70, 930], [50, 250]]


@pytest.mark.parametrize("raw", ["0", "1", "1.5", "-0.1"])
def test_a_false_alarm_rate_outside_zero_one_stops_the_process(raw: str) -> None:
    with pytest.raises(SettingsError, match="DRIFT_FALSE_ALARM_RATE"):
        Settings.from_env({"DRIFT_FALSE_ALARM_RATE": raw})


def test_the_policy_follows_the_settings() -> None:
    settings = Settings.from_env({"DRIFT_FALSE_ALARM_RATE": "0.01", "DRIFT_SHARE_THRESHOLD": "0.3",
                                  "PREDICTION_DRIFT_ALARM": "on", "QUALITY_MIN_AUC": "0.7",
                                  "QUALITY_MIN_LABELS": "50"})
    policy = DriftPolicy.from_settings(settings)
    assert policy == DriftPolicy(false_alarm_rate=0.01, share_threshold=0.3,
                                 prediction_alarm=True, min_auc=0.7, min_labels=50)
    assert policy.with_overrides(min_auc=None, min_labels=10).min_labels == 10


def test_a_small_reference_gets_no_conditional_fits() -> None:
    """Residuals on the fitted rows are smaller than on new ones: with fewer than ten
    reference rows per input the relation tests would false-alarm, so none are made."""
    schema = Schema.load()
    assert ConditionalModel.fit(generate(100, 3, schema=schema), schema).fits == {}
    assert "credit_limit" in ConditionalModel.fit(generate(2000, 3, schema=schema), schema).fits
