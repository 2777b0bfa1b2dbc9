"""The flight-price business: a generated table the schema accepts, fares that follow the
known process, and the one place that says which business a schema's table comes from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import Schema
from core.task import task_of
from simulation import flights
from simulation.demo_tables import NoDemoTable, demo_table
from simulation.traffic import records_from_frame
from tests.factories import diabetes_schema

ROOT = Path(__file__).resolve().parents[1]
FLIGHTS_SCHEMA = ROOT / "core" / "schemas" / "flights.yaml"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(FLIGHTS_SCHEMA)


@pytest.fixture(scope="module")
def table(schema: Schema) -> pd.DataFrame:
    return demo_table(schema, 20_000, seed=7)


def test_same_seed_same_table(schema: Schema) -> None:
    pd.testing.assert_frame_equal(demo_table(schema, 300, 3), demo_table(schema, 300, 3))
    assert not demo_table(schema, 300, 3).equals(demo_table(schema, 300, 4))


def test_every_row_passes_the_schema_and_the_target_is_a_number_in_range(
        table: pd.DataFrame, schema: Schema) -> None:
    assert schema.task == "regression" and list(table) == [*schema.feature_names, "price"]
    for record in records_from_frame(table.head(3000), schema):
        schema.validate_record(record)
    task_of(schema).check_target(table["price"], "flights")  # raises when it cannot learn
    assert (table["source_city"] != table["destination_city"]).all()


def test_fares_look_like_the_real_tables(table: pd.DataFrame) -> None:
    by_class = table.groupby("travel_class")["price"].mean()
    assert 4_500 < by_class["Economy"] < 8_500 and 40_000 < by_class["Business"] < 65_000
    assert set(table.loc[table["travel_class"] == "Business", "airline"]) == {
        "Vistara", "Air_India"}
    assert 0.80 < (table["stops"] == 1).mean() < 0.88
    assert table["price"].between(1_000, 200_000).all()


def test_fares_follow_the_known_process(table: pd.DataFrame) -> None:
    """The noise-free fare explains most of the spread (a model has a signal to learn),
    the rest is the stated noise; a booking a day ahead costs more than one a month
    ahead, a direct flight less than one with a stop."""
    residual = np.log(table["price"]) - flights.log_fare_mean(table)
    assert abs(residual.mean()) < 0.01 and abs(residual.std() - flights.FARE_NOISE) < 0.01
    assert np.corrcoef(np.log(table["price"]), flights.log_fare_mean(table))[0, 1] > 0.97
    economy = table[table["travel_class"] == "Economy"]
    assert (economy.loc[economy["days_left"] <= 2, "price"].median()
            > 1.5 * economy.loc[economy["days_left"] >= 30, "price"].median())
    direct = flights.log_fare_mean(economy.assign(stops=0))
    one_stop = flights.log_fare_mean(economy.assign(stops=1))
    assert (direct < one_stop).all()


def test_a_schema_without_a_generator_or_scenario_is_told_so() -> None:
    with pytest.raises(NoDemoTable, match=r"'diabetes'.*credit_card_churn, flight_prices.*"
                                          r"DATA_PATH"):
        demo_table(Schema.from_dict(diabetes_schema()), 10, 1)
    with pytest.raises(NoDemoTable, match=r"flight_prices has no scenario 'covariate' "
                                          r"\(its scenarios: none\)"):
        demo_table(Schema.load(FLIGHTS_SCHEMA), 10, 1, "covariate")


def test_make_data_writes_the_chosen_business_table_once(tmp_path: Path) -> None:
    env = {**os.environ, "ONEBOX_HOME": str(tmp_path), "SCHEMA_PATH": str(FLIGHTS_SCHEMA)}
    argv = [sys.executable, "-m", "simulation.demo_tables", "--rows", "50", "--if-missing"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    written = tmp_path / "data" / "flights.csv"
    assert "wrote 50 rows (price mean" in done.stdout and "INR" in done.stdout
    before = written.read_bytes()
    again = subprocess.run([*argv[:-2], "5", "--if-missing"], env=env, capture_output=True,
                           text=True, check=True, cwd=ROOT)
    assert again.stdout == "" and written.read_bytes() == before
