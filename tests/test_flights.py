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

from core.schema import RecordInvalid, Schema
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
    with pytest.raises(NoDemoTable, match=r"flight_prices has no scenario 'covariate' \(its "
                                          r"scenarios: business_up, .*, none\)"):
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


@pytest.mark.parametrize(("scenario", "columns"), [
    ("late_booking", {"days_left"}),
    ("business_up", {"travel_class"}),
    ("new_route", {"destination_city"}),
    ("fuel_surcharge", set()),
])
def test_a_scenario_changes_the_columns_it_names_and_the_fare_only(
        schema: Schema, table: pd.DataFrame, scenario: str, columns: set[str]) -> None:
    drifted = demo_table(schema, len(table), seed=7, scenario=scenario)
    changed = {c for c in schema.feature_names if not drifted[c].equals(table[c])}
    assert changed == columns
    assert not drifted["price"].equals(table["price"])


def test_what_each_scenario_does_to_the_table(schema: Schema, table: pd.DataFrame) -> None:
    late = demo_table(schema, len(table), 7, "late_booking")
    assert late["days_left"].between(1, 15).all()
    assert late["price"].median() > 1.2 * table["price"].median()
    business = demo_table(schema, len(table), 7, "business_up")
    assert (business["travel_class"] == "Business").mean() > 1.5 * (
        table["travel_class"] == "Business").mean()
    surcharged = demo_table(schema, len(table), 7, "fuel_surcharge")
    ratio = surcharged["price"] / table["price"]
    assert ratio.between(1.15 - 1e-3, 1.15 + 1e-3).all()  # each fare, up to the rounding
    # The new route: a fifth of the rows go to a city the schema does not know, and each
    # of those is refused naming the destination.
    routed = demo_table(schema, 2000, 7, "new_route")
    new = routed[routed["destination_city"] == "Goa"]
    assert 0.17 < len(new) / len(routed) < 0.23
    for record in records_from_frame(new.head(50), schema):
        with pytest.raises(RecordInvalid) as refused:
            schema.validate_record(record)
        assert [p.field for p in refused.value.problems] == ["destination_city"]


KAGGLE_HEADER = (",airline,flight,source_city,departure_time,stops,arrival_time,"
                 "destination_city,class,duration,days_left,price")
KAGGLE_ROWS = [
    "0,SpiceJet,SG-8709,Delhi,Evening,zero,Night,Mumbai,Economy,2.17,1,5953",
    "1,Vistara,UK-706,Kolkata,Morning,one,Evening,Chennai,Business,9.5,26,55377",
    "2,Air_India,AI-868,Delhi,Early_Morning,two_or_more,Night,Hyderabad,Economy,16.33,49,"
    "4062",
]


def test_the_kaggle_flight_table_is_read_into_the_schema(tmp_path: Path,
                                                         schema: Schema) -> None:
    """Clean_Dataset.csv's layout (written here: it cannot be downloaded): the flight code
    and the row number dropped, stops as 0/1/2, class and duration renamed."""
    from simulation.loader import load_dataset

    path = tmp_path / "Clean_Dataset.csv"
    path.write_text("\n".join([KAGGLE_HEADER, *KAGGLE_ROWS]) + "\n")
    frame = load_dataset(path, schema)
    assert list(frame) == [*schema.feature_names, "price"]
    assert frame["stops"].tolist() == [0, 1, 2]
    assert frame["travel_class"].tolist() == ["Economy", "Business", "Economy"]
    assert frame["duration_hours"].tolist() == [2.17, 9.5, 16.33]
    assert frame["price"].tolist() == [5953.0, 55377.0, 4062.0]
    for record in records_from_frame(frame, schema):
        schema.validate_record(record)


@pytest.mark.parametrize(("change", "message"), [
    (lambda text: text.replace(",class,", ",cabin,"),
     r"missing columns \['class'\] \(the Clean_Dataset.csv layout\)"),
    (lambda text: text.replace(",two_or_more,", ",three,"), r"stops: unexpected values"),
    (lambda text: text.replace(",Hyderabad,", ",Goa,"),
     r"destination_city: values the schema \(destination_city\) does not allow: \['Goa'\]"),
])
def test_a_file_of_another_layout_is_refused_naming_the_column(
        tmp_path: Path, schema: Schema, change: object, message: str) -> None:
    from simulation.loader import LayoutError, load_dataset

    path = tmp_path / "Clean_Dataset.csv"
    path.write_text(change("\n".join([KAGGLE_HEADER, *KAGGLE_ROWS]) + "\n"))  # type: ignore[operator]
    with pytest.raises(LayoutError, match=message):
        load_dataset(path, schema)


def test_the_flight_table_under_the_churn_schema_says_which_schema_it_needs(
        tmp_path: Path) -> None:
    from simulation.loader import LayoutError, load_dataset

    path = tmp_path / "Clean_Dataset.csv"
    path.write_text("\n".join([KAGGLE_HEADER, *KAGGLE_ROWS]) + "\n")
    with pytest.raises(LayoutError, match="has no feature 'airline': set "
                                          "SCHEMA_PATH=core/schemas/flights.yaml"):
        load_dataset(path, Schema.load())
