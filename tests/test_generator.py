"""The simulated business: realistic marginals, a real signal, and drift exactly where asked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics import roc_auc_score

from core.schema import Schema
from simulation.generator import BASELINE, SCENARIOS, Drift, churn_probability, generate
from simulation.traffic import records_from_frame

N = 20_000


@pytest.fixture(scope="module")
def base(schema: Schema) -> pd.DataFrame:
    return generate(N, seed=7, schema=schema)


def moved(before: pd.Series, after: pd.Series, categorical: bool) -> bool:
    """Did the distribution of this column change (p < 1e-6)?"""
    if categorical:
        table = pd.crosstab(
            np.r_[np.zeros(len(before)), np.ones(len(after))],
            pd.concat([before, after]).astype(str).to_numpy(),
        )
        return chi2_contingency(table).pvalue < 1e-6
    return ks_2samp(before.astype(float).dropna(), after.astype(float).dropna()).pvalue < 1e-6


def test_same_seed_same_table(schema: Schema) -> None:
    pd.testing.assert_frame_equal(generate(500, 3, schema=schema), generate(500, 3, schema=schema))
    assert not generate(500, 3, schema=schema).equals(generate(500, 4, schema=schema))


def test_marginals_look_like_the_real_table(base: pd.DataFrame) -> None:
    assert 0.13 <= base["churn"].mean() <= 0.19
    assert base["customer_age"].between(26, 73).all()
    assert base["months_on_book"].between(13, 56).all()
    assert base["credit_limit"].between(1438.3, 34516).all()
    assert base["total_revolving_bal"].between(0, 2517).all()
    assert 0.90 <= (base["card_category"] == "blue").mean() <= 0.95
    assert 0.10 <= base["education_level"].isna().mean() <= 0.20


def test_every_generated_row_passes_the_schema(base: pd.DataFrame, schema: Schema) -> None:
    records = records_from_frame(base.head(2000), schema)
    assert len(records) == 2000  # an empty table would pass the loop below
    for record in records:
        schema.validate_record(record)


def test_churn_follows_the_features(base: pd.DataFrame) -> None:
    # The known process separates churners well, so a model has something to learn.
    assert roc_auc_score(base["churn"], churn_probability(base)) > 0.75


@pytest.mark.parametrize("name", [n for n, d in SCENARIOS.items() if d.changed_features])
def test_drift_moves_the_named_columns_and_no_other(
    name: str, base: pd.DataFrame, schema: Schema
) -> None:
    drift = SCENARIOS[name]
    drifted = generate(N, seed=7, drift=drift, schema=schema)
    for feat in schema.features:
        if feat.name in drift.moved_features:
            assert moved(base[feat.name], drifted[feat.name], feat.is_categorical), feat.name
        elif feat.name in drift.regrouped_features:
            # Re-paired between customers: other rows, the very same values.
            assert (base[feat.name] != drifted[feat.name]).mean() > 0.05, feat.name
            assert sorted(base[feat.name]) == sorted(drifted[feat.name]), feat.name
        else:
            # One random stream per column: an unnamed column is not merely similar,
            # it is the same draw.
            pd.testing.assert_series_equal(base[feat.name], drifted[feat.name])
    # The drifted column also differs from a clean table drawn with another seed.
    other_clean = generate(N, seed=8, schema=schema)
    for column in drift.moved_features:
        feat = schema.feature(column)
        assert moved(other_clean[column], drifted[column], feat.is_categorical)


def test_covariate_shift_changes_the_named_amounts(base: pd.DataFrame, schema: Schema) -> None:
    drifted = generate(N, seed=7, drift=SCENARIOS["economic_shift"], schema=schema)
    assert drifted["customer_age"].mean() == pytest.approx(base["customer_age"].mean() + 5,
                                                           abs=0.3)
    ratio = drifted["credit_limit"].median() / base["credit_limit"].median()
    assert ratio == pytest.approx(1.3, abs=0.03)


def test_a_category_can_vanish_or_appear(base: pd.DataFrame, schema: Schema) -> None:
    no_divorced = generate(N, seed=7, drift=SCENARIOS["no_divorced"], schema=schema)
    assert (base["marital_status"] == "divorced").mean() > 0.05
    assert not (no_divorced["marital_status"] == "divorced").any()
    new = generate(N, seed=7, drift=SCENARIOS["new_card_category"], schema=schema)
    assert (new["card_category"] == "titanium").mean() == pytest.approx(0.2, abs=0.02)
    assert "titanium" not in schema.feature("card_category").values


def test_concept_change_keeps_features_and_changes_the_relation(
    base: pd.DataFrame, schema: Schema
) -> None:
    changed = generate(N, seed=7, drift=SCENARIOS["concept_change"], schema=schema)
    pd.testing.assert_frame_equal(base[schema.feature_names], changed[schema.feature_names])
    old_relation = churn_probability(base)
    assert roc_auc_score(base["churn"], old_relation) > 0.75
    # The old relation no longer ranks the new churners.
    assert roc_auc_score(changed["churn"], old_relation) < 0.6


def test_no_drift_changes_nothing(base: pd.DataFrame, schema: Schema) -> None:
    pd.testing.assert_frame_equal(base, generate(N, seed=7, drift=Drift(), schema=schema))


# --- joint shifts: every column as before, other combinations --------------------------------

JOINT = [n for n, d in SCENARIOS.items() if d.joint]


def test_the_joint_scenarios_are_covariate_shifts_of_how_columns_go_together() -> None:
    assert JOINT == ["young_transactors", "limit_income_by_tenure"]
    for name in JOINT:
        drift = SCENARIOS[name]
        # Labels follow the baseline coefficients; nothing the schema does not know.
        assert drift.concept == BASELINE and drift.new_category is None
        assert drift.moved_features == set() and drift.regrouped_features


def _young_transactors(frame: pd.DataFrame) -> pd.Series:
    return ((frame["customer_age"] <= 35) & (frame["total_revolving_bal"] == 0)
            & (frame["total_relationship_count"] >= 5))


def _log_limit_fit(frame: pd.DataFrame) -> tuple[np.ndarray, float]:
    """Least squares of log(limit) on income band, card tier and gender: coefficients and
    the residuals' SD (what the drift alarm's relation test sees of the limit)."""
    income = frame["income_category"].astype(float).fillna(2.0).to_numpy()
    x = np.column_stack([np.ones(len(frame)), income,
                         *[(frame["card_category"] == c).to_numpy(float)
                           for c in ("silver", "gold", "platinum")],
                         (frame["gender"] == "M").to_numpy(float)])
    y = np.log(frame["credit_limit"].to_numpy(float))
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coefficients, float(np.std(y - x @ coefficients))


def test_young_transactors_are_a_segment_the_reference_barely_had(
    base: pd.DataFrame, schema: Schema
) -> None:
    drifted = generate(N, seed=7, drift=SCENARIOS["young_transactors"], schema=schema)
    young = drifted["customer_age"] <= 35
    # Young, zero balance and five products or more: rare before, every young one now.
    assert _young_transactors(base).mean() < 0.01
    assert _young_transactors(drifted)[young].all()
    assert _young_transactors(drifted).mean() == pytest.approx(young.mean())
    assert 0.07 < young.mean() < 0.11
    # ... with the highest limits of their income band, card and gender.
    groups = ["income_category", "card_category", "gender"]
    rank = drifted.groupby(groups, dropna=False)["credit_limit"].rank(pct=True)
    before = base.groupby(groups, dropna=False)["credit_limit"].rank(pct=True)
    assert rank[young].median() > 0.85 > 0.6 > before[young].median()
    # What a linear fit sees of the limit does not move: same slopes, same residual spread.
    (coef_before, sd_before), (coef_after, sd_after) = (_log_limit_fit(base),
                                                        _log_limit_fit(drifted))
    np.testing.assert_allclose(coef_after, coef_before, atol=0.01)
    assert sd_after == pytest.approx(sd_before, rel=0.005)


def test_limits_follow_income_only_with_tenure_and_on_average_as_before(
    base: pd.DataFrame, schema: Schema
) -> None:
    drifted = generate(N, seed=7, drift=SCENARIOS["limit_income_by_tenure"], schema=schema)

    def slope(frame: pd.DataFrame) -> float:
        blue = frame[frame["card_category"] == "blue"]
        income = blue["income_category"].astype(float).fillna(2.0)
        return float(np.polyfit(income, np.log(blue["credit_limit"]), 1)[0])

    established = drifted["months_on_book"] >= 36
    assert slope(base[established]) == pytest.approx(0.28, abs=0.02)
    assert slope(base[~established]) == pytest.approx(0.28, abs=0.02)
    assert slope(drifted[established]) == pytest.approx(0.53, abs=0.05)
    assert slope(drifted[~established]) == pytest.approx(0.0, abs=0.03)
    # Pooled, a linear fit finds the same slopes and the same residual spread.
    (coef_before, sd_before), (coef_after, sd_after) = (_log_limit_fit(base),
                                                        _log_limit_fit(drifted))
    np.testing.assert_allclose(coef_after, coef_before, atol=0.02)
    assert sd_after == pytest.approx(sd_before, rel=0.02)
