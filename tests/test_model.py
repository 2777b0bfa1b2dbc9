"""The trained model's behaviour: it learned the signal the data-generating process put in."""

from __future__ import annotations

import pandas as pd
import pytest

from core import registry
from core.schema import Schema, model_frame
from simulation.generator import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def customers(schema: Schema) -> pd.DataFrame:
    return generate(2000, seed=99, schema=schema)


def mean_risk(model: registry.LoadedModel, frame: pd.DataFrame, **changes: object) -> float:
    return float(model.predict_proba(model_frame(model.schema, frame.assign(**changes))).mean())


def test_a_low_revolving_balance_raises_churn_risk(champion: registry.LoadedModel,
                                                   customers: pd.DataFrame) -> None:
    low = mean_risk(champion, customers, total_revolving_bal=100.0)
    high = mean_risk(champion, customers, total_revolving_bal=1500.0)
    assert low > 1.5 * high


def test_more_products_never_raise_churn_risk_on_average(champion: registry.LoadedModel,
                                                          customers: pd.DataFrame) -> None:
    risks = [mean_risk(champion, customers, total_relationship_count=n) for n in range(1, 7)]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(risks, risks[1:], strict=False))
    assert risks[0] > risks[-1]


def test_holdout_quality_is_near_the_known_process(champion: registry.LoadedModel,
                                                   schema: Schema) -> None:
    from sklearn.metrics import roc_auc_score

    from simulation.generator import churn_probability

    fresh = generate(5000, seed=123, schema=schema)
    model_auc = roc_auc_score(fresh["churn"], champion.predict_proba(model_frame(schema, fresh)))
    oracle_auc = roc_auc_score(fresh["churn"], churn_probability(fresh))
    # The true probabilities bound what any model can reach on this data.
    assert model_auc > oracle_auc - 0.05
