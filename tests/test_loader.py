"""The Kaggle BankChurners loader, on rows written in that layout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.schema import Schema
from simulation.loader import LayoutError, load_bankchurners, load_dataset
from simulation.traffic import records_from_frame
from tests.factories import KAGGLE_HEADER, KAGGLE_ROWS, write_kaggle_csv, write_training_csv


def test_maps_names_categories_and_ordinals(tmp_path: Path, schema: Schema) -> None:
    frame = load_bankchurners(write_kaggle_csv(tmp_path / "BankChurners.csv"), schema)
    assert list(frame.columns) == [*schema.feature_names, "churn"]
    first = frame.iloc[0]
    assert first["customer_age"] == 45 and first["gender"] == "M"
    assert first["education_level"] == 1          # High School
    assert first["income_category"] == 2          # $60K - $80K
    assert first["marital_status"] == "married" and first["card_category"] == "blue"
    assert first["credit_limit"] == 12691.0 and first["total_revolving_bal"] == 777.0
    assert frame["churn"].tolist() == [0, 0, 1, 1, 0, 0, 0]
    assert frame["income_category"].tolist()[3:5] == [pd.NA, 4]          # Unknown, $120K +
    assert frame["education_level"].tolist()[2:5] == [pd.NA, 5, 0]     # Unknown, Doctorate...
    assert frame["marital_status"].iloc[3] == "unknown"
    assert frame["card_category"].tolist()[2:5] == ["gold", "platinum", "silver"]


def test_leaking_and_unused_columns_are_dropped(tmp_path: Path, schema: Schema) -> None:
    frame = load_bankchurners(write_kaggle_csv(tmp_path / "b.csv"), schema)
    assert not any(c.startswith("Naive_Bayes") for c in frame.columns)
    assert "CLIENTNUM" not in frame.columns and "Total_Trans_Ct" not in frame.columns


def test_loaded_rows_are_valid_requests(tmp_path: Path, schema: Schema) -> None:
    frame = load_bankchurners(write_kaggle_csv(tmp_path / "b.csv"), schema)
    records = records_from_frame(frame, schema)
    assert len(records) == len(KAGGLE_ROWS) == 7  # an empty load would pass the loop below
    for record in records:
        schema.validate_record(record)


def test_unexpected_value_names_the_column(tmp_path: Path, schema: Schema) -> None:
    rows = [list(KAGGLE_ROWS[0])]
    rows[0][KAGGLE_HEADER.index("Card_Category")] = "Diamond"
    with pytest.raises(LayoutError, match=r"Card_Category: unexpected values \['Diamond'\]"):
        load_bankchurners(write_kaggle_csv(tmp_path / "b.csv", rows), schema)


def test_missing_column_is_named(tmp_path: Path, schema: Schema) -> None:
    header = [c for c in KAGGLE_HEADER if c != "Credit_Limit"]
    rows = [[v for c, v in zip(KAGGLE_HEADER, r, strict=True) if c != "Credit_Limit"]
            for r in KAGGLE_ROWS]
    with pytest.raises(LayoutError, match="Credit_Limit"):
        load_bankchurners(write_kaggle_csv(tmp_path / "b.csv", rows, header), schema)


def test_load_dataset_reads_both_layouts(tmp_path: Path, schema: Schema) -> None:
    kaggle = load_dataset(write_kaggle_csv(tmp_path / "k.csv"), schema)
    own = load_dataset(write_training_csv(tmp_path / "own.csv", schema, rows=50), schema)
    assert list(kaggle.columns) == list(own.columns)
    assert own["education_level"].dtype == "Int64"
