"""The drift alarm: quiet on clean traffic, loud on each injected drift, naming what moved.

Windows of 300 predictions are the smallest the alarm is built for.  The
numbers behind the thresholds (how often each holds, over thousands of windows)
come from `python -m benchmarks.fidelity`; these tests pin the behaviour
on fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest

from core import registry
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from core.settings import Settings, SettingsError
from monitoring.drift import (
    JOINT_COLUMN,
    JOINT_TEST,
    MIN_CONDITIONAL_R2,
    MIN_JOINT_ROWS,
    ColumnDrift,
    ConditionalModel,
    DriftPolicy,
    DriftResult,
    classifier_test,
    compute_drift,
    conditional_column,
    drift_alarm,
    p_values,
    pooled_contingency,
)
from monitoring.quality import live_quality
from orchestration.train import stable_holdout
from simulation.generator import SCENARIOS, churn_probability, generate

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


def test_the_reference_predictions_are_the_served_models_on_rows_it_never_trained_on(
    champion: registry.LoadedModel,
) -> None:
    # What the prediction's drift test compares served probabilities with must come from
    # the same model on unseen rows: the fold models' out-of-fold scores differ slightly
    # in shape from the refit model's, and alarmed on clean traffic.
    reference = champion.reference()
    scored = reference[reference[PREDICTION_COLUMN].notna()]
    assert 500 < len(scored) < len(reference)
    assert stable_holdout(scored, champion.schema).all()
    assert not stable_holdout(reference[reference[PREDICTION_COLUMN].isna()],
                              champion.schema).any()
    served = champion.predict_proba(model_frame(champion.schema, scored))
    np.testing.assert_allclose(scored[PREDICTION_COLUMN], served, rtol=1e-6)
    assert champion.reference_out_of_sample


@pytest.mark.slow
def test_twenty_clean_windows_of_300_raise_no_alarm(champion: registry.LoadedModel) -> None:
    policy = DriftPolicy()
    reference = champion.reference()
    raised = []
    for seed in range(1000, 1020):
        window = logged_window(champion, SMALLEST_WINDOW, seed)
        alarm = drift_alarm(compute_drift(reference, window, champion.schema, policy,
                                          report=False),
                            live_quality(window, champion.task), policy,
                            champion.task, {})
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
    drift = compute_drift(champion.reference(), window, champion.schema, report=False)
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

    drift = compute_drift(champion.reference(), window, champion.schema, report=False)

    assert drift.drifted_features == ["card_category"]


@pytest.mark.slow
def test_a_concept_change_raises_the_alarm_through_live_quality_not_input_drift(
    champion: registry.LoadedModel,
) -> None:
    policy = DriftPolicy()
    reference = champion.reference()
    changed = logged_window(champion, SMALLEST_WINDOW, seed=31, scenario="concept_change")
    clean = logged_window(champion, SMALLEST_WINDOW, seed=31)

    drift = compute_drift(reference, changed, champion.schema, policy, report=False)
    alarm = drift_alarm(drift, live_quality(changed, champion.task), policy,
                           champion.task, {})

    # Same inputs, so the same predictions: only the outcomes tell.
    assert not drift.drift_detected
    assert alarm.detected and alarm.quality_degraded and not alarm.data_drift
    assert "live AUC" in alarm.reason
    assert not drift_alarm(compute_drift(reference, clean, champion.schema, policy,
                                         report=False),
                           live_quality(clean, champion.task), policy,
                           champion.task, {}).detected
    # Too few labels yet: no verdict on quality.
    unlabelled = changed.assign(actual=[*changed["actual"][:policy.min_labels - 1],
                                        *[None] * (len(changed) - policy.min_labels + 1)])
    assert not drift_alarm(drift, live_quality(unlabelled, champion.task), policy,
                           champion.task, {}).detected


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
    # On by default (out-of-sample reference predictions); off, it is only reported.
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


# --- the joint test: what no single column and no linear fit shows ---------------------------

JOINT_WINDOW = 1000


@pytest.fixture(scope="module")
def generated_reference(schema: Schema) -> pd.DataFrame:
    """A reference sample as the train flow keeps one (5,000 rows), without predictions."""
    return generate(5000, seed=1, schema=schema)


@pytest.mark.parametrize("scenario", ["young_transactors", "limit_income_by_tenure"])
def test_a_joint_drift_moves_no_feature_nor_relation_but_the_classifier_sees_it(
    generated_reference: pd.DataFrame, schema: Schema, scenario: str
) -> None:
    policy = DriftPolicy()
    conditional = ConditionalModel.fit(generated_reference, schema)
    for seed in (2024, 2025):
        window = generate(JOINT_WINDOW, seed, SCENARIOS[scenario], schema)
        found = p_values(generated_reference, window, schema, policy, conditional)
        threshold = policy.false_alarm_rate / len(found)
        # Each feature's own test and each relation's residual test: nothing to see.
        quiet = {name: p for name, p in found.items() if name != JOINT_COLUMN}
        assert min(quiet.values()) > threshold, quiet
        assert found[JOINT_COLUMN] < threshold


def test_the_classifier_test_is_calibrated_on_clean_windows(
    generated_reference: pd.DataFrame, schema: Schema
) -> None:
    """Its null is exact (held-out halves): the p-values of clean windows are uniform,
    and none comes near the alarm's threshold."""
    clean = generate(30 * SMALLEST_WINDOW, seed=77, schema=schema)
    found = [classifier_test(generated_reference, clean.iloc[i:i + SMALLEST_WINDOW], schema)
             for i in range(0, len(clean), SMALLEST_WINDOW)]
    p = np.array([f.p_value for f in found if f is not None])
    assert len(p) == 30
    assert kstest(p, "uniform").pvalue > 0.01
    assert p.min() > DriftPolicy().false_alarm_rate / 17
    assert 0.4 < np.median([f.auc for f in found if f is not None]) < 0.6


def test_the_classifier_test_is_deterministic_and_skips_tiny_windows(
    generated_reference: pd.DataFrame, schema: Schema
) -> None:
    window = generate(SMALLEST_WINDOW, seed=5, schema=schema)
    first = classifier_test(generated_reference, window, schema)
    again = classifier_test(generated_reference, window, schema)
    assert first is not None and again is not None
    assert (first.p_value, first.auc) == (again.p_value, again.auc)
    np.testing.assert_array_equal(first.current_scores, again.current_scores)
    # Half of each side is scored, the other half trained on (NaN).
    assert np.isnan(first.current_scores).mean() == pytest.approx(0.5, abs=0.01)
    assert classifier_test(generated_reference, window.head(MIN_JOINT_ROWS - 1), schema) is None
    drift = compute_drift(generated_reference, window.head(MIN_JOINT_ROWS - 1), schema,
                          report=False)
    # No joint test: the budget is split over the features and relations alone.
    assert drift.joint is None and drift.summary()["joint_drift"] is None
    assert drift.features["gender"].threshold == pytest.approx(
        DriftPolicy().false_alarm_rate / (len(schema.feature_names) + len(drift.conditional)))


def _with_prediction(frame: pd.DataFrame) -> pd.DataFrame:
    """A stand-in for the model's probability: the process's own."""
    return frame.assign(**{PREDICTION_COLUMN: churn_probability(frame)})


def _shown(snapshot: object) -> tuple[dict[str, tuple[float, str, float, bool]], list[str]]:
    """What Evidently's report shows: per column (p-value, method, threshold, flagged),
    and the status of its dataset-level tests."""
    result = snapshot.dict()  # type: ignore[attr-defined]
    failed = {t["metric_config"]["metric_id"] for t in result["tests"]
              if t.get("status") == "FAIL"}
    columns = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = (float(metric["value"]), config["method"],
                                         float(config["threshold"]), metric["id"] in failed)
    dataset = [str(t["status"].value) for t in result["tests"]
               if not t["name"].startswith("Value Drift")]
    return columns, dataset


@pytest.mark.parametrize(("scenario", "prediction_alarm"), [("young_transactors", False),
                                                            ("none", True)])
def test_the_report_shows_the_p_values_and_decisions_computed_once(
    generated_reference: pd.DataFrame, schema: Schema, scenario: str, prediction_alarm: bool
) -> None:
    reference = _with_prediction(generated_reference)
    window = _with_prediction(generate(JOINT_WINDOW, 2024, SCENARIOS[scenario], schema))
    policy = DriftPolicy(prediction_alarm=prediction_alarm)

    drift = compute_drift(reference, window, schema, policy)
    without_report = compute_drift(reference, window, schema, policy, report=False)

    assert without_report.snapshot is None and drift.snapshot is not None
    assert without_report == drift  # the same figures, with or without the HTML
    assert drift.drift_detected is (scenario != "none")
    assert drift.joint is not None and drift.joint.method == JOINT_TEST
    assert (JOINT_COLUMN in drift.drifted_relations) is (scenario != "none")
    summary = drift.summary()
    assert summary["joint_drift"]["score"] == drift.joint.score
    assert 0.0 <= summary["joint_drift"]["auc"] <= 1.0
    ours = {**drift.features, **{conditional_column(n): c for n, c in drift.conditional.items()},
            JOINT_COLUMN: drift.joint, PREDICTION_COLUMN: drift.prediction}
    columns, dataset = _shown(drift.snapshot)
    # Every column the decision reads, and the prediction even when it does not count.
    assert set(columns) == set(ours)
    for name, column in ours.items():
        assert column is not None
        assert columns[name] == (column.score, column.method, column.threshold,
                                 column.drifted), name
    # Evidently's own dataset verdict is the data-drift decision.
    assert dataset == ["FAIL" if drift.drift_detected else "SUCCESS"]
