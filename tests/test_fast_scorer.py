"""The predictor's fast scoring paths give the logged model's probabilities: XGBoost's
inplace_predict for batches, the Python tree walk for a few records, on ordinary rows,
rows sitting exactly on split thresholds, and rows with missing values."""

from __future__ import annotations

import numpy as np
import pytest

from core import registry
from core.schema import Schema, model_frame
from server.fast_scorer import FastScorer
from server.model_source import ServedModel
from simulation.generator import SCENARIOS, generate
from simulation.traffic import records_from_frame

pytestmark = pytest.mark.slow


def thresholds(node: object, found: dict[int, set[float]]) -> None:
    if type(node) is tuple:
        column, threshold, left, right, _ = node
        found.setdefault(column, set()).add(threshold)
        thresholds(left, found)
        thresholds(right, found)


def test_both_paths_match_the_pipeline_including_split_edges_and_missing_values(
    champion: registry.LoadedModel, schema: Schema
) -> None:
    scorer = FastScorer.from_pipeline(champion.pipeline, schema)
    assert scorer is not None and scorer.walker is not None
    frame = generate(2000, 5, SCENARIOS["economic_shift"], schema)
    records = records_from_frame(frame, schema)
    # The scorer is the pipeline's own probability; calibration comes after (ServedModel).
    expected = champion.predict_raw_proba(model_frame(schema, frame))

    np.testing.assert_allclose(scorer.predict(records), expected, atol=1e-6, rtol=0)
    # A batch validated column by column scores from its columns: same matrix, same answer.
    batch = schema.validate_batch(records)
    assert batch.columns is not None
    np.testing.assert_array_equal(scorer.matrix_from_columns(batch.columns, len(records)),
                                  scorer.matrix(records))
    np.testing.assert_allclose(scorer.predict(batch.records, batch.columns), expected,
                               atol=1e-6, rtol=0)
    singles = np.concatenate([scorer.predict(records[i:i + 1]) for i in range(300)])
    np.testing.assert_allclose(singles, expected[:300], atol=1e-6, rtol=0)

    # Matrix rows moved onto split thresholds (where a float32/float64 slip would take the
    # other branch) or given a missing value (the tree's default direction).
    found: dict[int, set[float]] = {}
    for tree in scorer.walker.trees:
        thresholds(tree, found)
    rng = np.random.default_rng(7)
    edges = scorer.matrix(records[:1500])
    for row in edges:
        column = int(rng.choice(list(found)))
        row[column] = rng.choice(sorted(found[column]))
        if rng.random() < 0.3:
            row[rng.integers(0, scorer.width)] = np.nan
    from_xgboost = scorer.booster.inplace_predict(edges, missing=np.nan)
    # Both Python paths: the trees compiled into one function, and the node walk.
    assert scorer.walker.margin is not None
    np.testing.assert_allclose(scorer.walker.predict(edges), from_xgboost,
                               atol=1e-6, rtol=0)
    rounded = edges.astype(np.float32).astype(np.float64).tolist()
    np.testing.assert_allclose(scorer.walker.walk(rounded), from_xgboost, atol=1e-6, rtol=0)


def test_trees_too_deep_to_compile_are_walked() -> None:
    """A chain tree 300 levels deep (lossguide or unbounded depth) is past what the
    parser takes as nested expressions: no compiled function, the walk still scores."""
    from server.fast_scorer import TreeWalker, _compiled_margin

    node: object = 0.25
    for level in range(300):
        node = (0, float(level), -0.01, node, False)
    assert _compiled_margin((node,), 0.0) is None
    walker = TreeWalker((node,), 0.0)
    assert walker.margin is None
    probability = walker.predict(np.array([[1000.0]]))[0]
    assert probability == pytest.approx(1 / (1 + np.exp(-0.25)))


def test_the_served_probability_is_the_versions_calibrated_one_on_every_path(
    champion: registry.LoadedModel, schema: Schema
) -> None:
    """What the predictor answers (ServedModel) is what the monitoring and the gate read
    (LoadedModel.predict_proba): the pipeline's probability through the version's Platt
    scaling, for a few rows (the tree walker), a batch (XGBoost) and the sklearn fallback."""
    frame = generate(500, 9, schema=schema)
    records = records_from_frame(frame, schema)
    calibrated = champion.predict_proba(model_frame(schema, frame))
    raw = champion.predict_raw_proba(model_frame(schema, frame))
    assert not champion.calibration.is_identity
    assert np.abs(calibrated - raw).max() > 1e-3  # the test would see a skipped calibration
    served = ServedModel.prepare(champion, "test")
    np.testing.assert_allclose(served.predict(records), calibrated, atol=1e-6, rtol=0)
    np.testing.assert_allclose(served.predict(records[:2]), calibrated[:2], atol=1e-6,
                               rtol=0)
    fallback = ServedModel(champion, "test", scorer=None)
    np.testing.assert_allclose(fallback.predict(records), calibrated, atol=1e-9, rtol=0)


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_a_regressors_fast_paths_give_the_pipelines_number(schema: Schema, metric: str) -> None:
    """A regressor takes the fast path too (not the slow sklearn one): XGBoost for batches
    and the tree walk for a few rows give `pipeline.predict`, for both objectives (the
    absolute error refreshes its leaves after each tree: the walk reads the refreshed
    values), with the churn table's categories and missing values."""
    from core.schema import Schema as SchemaType
    from core.task import task_of
    from orchestration.model import build_pipeline

    raw = schema.to_dict() | {"task": "regression"}
    raw["target"] = {"name": "spend", "unit": "USD", "metric": metric}
    regression = SchemaType.from_dict(raw)
    frame = generate(3000, 11, schema=schema)
    rng = np.random.default_rng(3)
    spend = (0.05 * frame["credit_limit"] + 900 * (frame["card_category"] != "Blue")
             + rng.normal(0, 300, len(frame)))
    x = model_frame(regression, frame)
    pipeline = build_pipeline(regression, {"n_estimators": 120, "max_depth": 4}, 0).fit(x, spend)
    expected = pipeline.predict(x)
    scorer = FastScorer.from_pipeline(pipeline, regression)
    assert scorer is not None and scorer.walker is not None and scorer.walker.margin is not None
    records = records_from_frame(frame, regression)
    assert any(v is None for r in records[:500] for v in r.values())  # missing values seen

    # float32 sums: agreement to a millionth of the answer's size.
    tolerance = 1e-6 * float(np.abs(expected).max())
    np.testing.assert_allclose(scorer.predict(records), expected, atol=tolerance, rtol=0)
    singles = np.concatenate([scorer.predict(records[i:i + 1]) for i in range(300)])
    np.testing.assert_allclose(singles, expected[:300], atol=tolerance, rtol=0)
    rounded = scorer.matrix(records[:300]).astype(np.float32).astype(np.float64).tolist()
    np.testing.assert_allclose(scorer.walker.walk(rounded), expected[:300], atol=tolerance,
                               rtol=0)
    # The explanation is in the target's unit and adds up to the number served.
    explained = scorer.explain(records[:50]).as_dicts(regression.feature_names,
                                                      task_of(regression).explanation_unit)
    assert {e["unit"] for e in explained} == {"USD"}
    np.testing.assert_allclose([e["base"] + sum(e["contributions"].values()) for e in explained],
                               expected[:50], atol=10 * tolerance, rtol=0)
