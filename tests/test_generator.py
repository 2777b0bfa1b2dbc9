"""The simulated business: realistic marginals, a real signal, and drift exactly where asked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics import roc_auc_score

from core.schema import Schema
from simulation.generator import SCENARIOS, Drift, churn_probability, generate
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
    for record in records_from_frame(base.head(2000), schema):
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
        if feat.name in drift.changed_features:
            assert moved(base[feat.name], drifted[feat.name], feat.is_categorical), feat.name
        else:
            # One random stream per column: an unnamed column is not merely similar,
            # it is the same draw.
            pd.testing.assert_series_equal(base[feat.name], drifted[feat.name])
    # The drifted column also differs from a clean table drawn with another seed.
    other_clean = generate(N, seed=8, schema=schema)
    for column in drift.changed_features:
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
