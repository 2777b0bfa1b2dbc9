"""The train flow's split: the gate's holdout is chosen by row, so it never changes
between retrains (orchestration.train.stable_holdout)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.schema import Schema
from orchestration.train import row_keys, split_data, stable_holdout
from simulation.generator import generate


def test_a_fifth_of_the_rows_is_held_out_with_the_label_rate_of_the_rest(
    schema: Schema,
) -> None:
    frame = generate(10_000, 5, schema=schema)
    split = split_data.fn(frame, schema, 42)
    assert abs(len(split.holdout) - 2_000) < 4 * (10_000 * 0.2 * 0.8) ** 0.5
    assert len(split.train) + len(split.valid) + len(split.holdout) == 10_000
    assert abs(split.holdout["churn"].mean() - frame["churn"].mean()) < 0.02
    assert abs(len(split.valid) / (len(split.train) + len(split.valid)) - 0.25) < 0.01


def test_adding_rows_never_moves_a_row_between_holdout_and_training(schema: Schema) -> None:
    base = generate(4_000, 5, schema=schema)
    production = generate(1_000, 6, schema=schema)
    before = split_data.fn(base, schema, 42)
    after = split_data.fn(pd.concat([base, production], ignore_index=True), schema, 7)
    keys = lambda frame: set(row_keys(frame, schema).tolist())  # noqa: E731
    trained_on = keys(pd.concat([before.train, before.valid]))
    assert keys(before.holdout) <= keys(after.holdout)
    assert not trained_on & keys(after.holdout)
    assert len(after.holdout) > len(before.holdout)


def test_a_row_has_the_same_key_whatever_dtypes_its_table_gave_it(schema: Schema) -> None:
    frame = generate(200, 8, schema=schema)
    as_logged = frame.copy()
    for name in schema.numeric_features:  # the log reads numbers back as floats
        as_logged[name] = as_logged[name].astype(float)
    as_text = frame.astype(object)
    np.testing.assert_array_equal(row_keys(frame, schema), row_keys(as_logged, schema))
    np.testing.assert_array_equal(row_keys(frame, schema), row_keys(as_text, schema))
    assert len(set(row_keys(frame, schema).tolist())) == 200
    np.testing.assert_array_equal(stable_holdout(frame, schema),
                                  stable_holdout(frame.iloc[::-1], schema)[::-1])
