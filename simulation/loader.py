"""Read the real Kaggle tables' layouts into the schema's columns.

"BankChurners.csv" (churn): names become snake_case, category strings the schema's
values, income and education their ordinal codes, "Unknown" null.  The two trailing
`Naive_Bayes_Classifier_*` columns are another model's outputs that leak the label, so
they are dropped, as are the columns the schema does not use.

"Clean_Dataset.csv" (flight prices, core/schemas/flights.yaml): an unnamed index column,
airline, flight, source_city, departure_time, stops ("zero", "one", "two_or_more"),
arrival_time, destination_city, class, duration, days_left, price.  The flight code is
an identifier (it names the row, not the fare's causes) and the index a row number:
both dropped; stops become 0, 1 and 2, class `travel_class`, duration
`duration_hours`.

Any other file is read in the schema's own layout (what the generators write).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.schema import Schema
from core.task import task_of

COLUMN_NAMES = {
    "Customer_Age": "customer_age",
    "Gender": "gender",
    "Dependent_count": "dependent_count",
    "Education_Level": "education_level",
    "Marital_Status": "marital_status",
    "Income_Category": "income_category",
    "Card_Category": "card_category",
    "Months_on_book": "months_on_book",
    "Total_Relationship_Count": "total_relationship_count",
    "Credit_Limit": "credit_limit",
    "Total_Revolving_Bal": "total_revolving_bal",
}
TARGET_COLUMN = "Attrition_Flag"
TARGET_VALUES = {"Attrited Customer": 1, "Existing Customer": 0}

EDUCATION_CODES = {
    "Uneducated": 0, "High School": 1, "College": 2, "Graduate": 3, "Post-Graduate": 4,
    "Doctorate": 5, "Unknown": None,
}
INCOME_CODES = {
    "Less than $40K": 0, "$40K - $60K": 1, "$60K - $80K": 2, "$80K - $120K": 3,
    "$120K +": 4, "Unknown": None,
}
MARITAL_VALUES = {"Married": "married", "Single": "single", "Divorced": "divorced",
                  "Unknown": "unknown"}
CARD_VALUES = {"Blue": "blue", "Silver": "silver", "Gold": "gold", "Platinum": "platinum"}
GENDER_VALUES = {"M": "M", "F": "F"}

VALUE_MAPS = {
    "education_level": EDUCATION_CODES,
    "income_category": INCOME_CODES,
    "marital_status": MARITAL_VALUES,
    "card_category": CARD_VALUES,
    "gender": GENDER_VALUES,
}


class LayoutError(ValueError):
    """The file is not in the BankChurners layout; the message names the column or value."""


def _read_layout(path: str | Path, columns: set[str], layout: str) -> pd.DataFrame:
    """The file's cells as text, once it has every column of the layout."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted(columns - set(raw.columns))
    if missing:
        raise LayoutError(f"{path}: missing columns {missing} (the {layout} layout)")
    return raw


def load_bankchurners(path: str | Path, schema: Schema | None = None) -> pd.DataFrame:
    """Read a BankChurners.csv file into the schema's features plus the target."""
    schema = schema or Schema.load()
    raw = _read_layout(path, set(COLUMN_NAMES) | {TARGET_COLUMN}, "BankChurners.csv")
    # Naive_Bayes_* leak the label; everything not named in the schema is simply not read.
    out = pd.DataFrame(index=raw.index)
    for source, name in COLUMN_NAMES.items():
        column = raw[source].str.strip()
        if name in VALUE_MAPS:
            mapping = VALUE_MAPS[name]
            unknown = sorted(set(column) - set(mapping))
            if unknown:
                raise LayoutError(f"{source}: unexpected values {unknown}")
            mapped = column.map(mapping)
            feat = schema.feature(name)
            out[name] = (pd.array(mapped.tolist(), dtype="Int64") if feat.kind == "ordinal"
                         else mapped)
        else:
            feat = schema.feature(name)
            numbers = pd.to_numeric(column, errors="coerce")
            if numbers.isna().any():
                bad = column[numbers.isna()].iloc[0]
                raise LayoutError(f"{source}: not a number: {bad!r}")
            out[name] = numbers.astype(int) if feat.kind == "integer" else numbers.astype(float)
    target = raw[TARGET_COLUMN].str.strip()
    unknown = sorted(set(target) - set(TARGET_VALUES))
    if unknown:
        raise LayoutError(f"{TARGET_COLUMN}: unexpected values {unknown}")
    out[schema.target] = target.map(TARGET_VALUES).astype(int)
    return out[[*schema.feature_names, schema.target]]


FLIGHT_COLUMNS = {
    "airline": "airline", "source_city": "source_city", "departure_time": "departure_time",
    "stops": "stops", "arrival_time": "arrival_time", "destination_city": "destination_city",
    "class": "travel_class", "duration": "duration_hours", "days_left": "days_left",
}
FLIGHT_TARGET = "price"
STOP_CODES = {"zero": 0, "one": 1, "two_or_more": 2}
# The column that tells the flight table's layout from the others (the flight code).
FLIGHT_CODE_COLUMN = "flight"


def load_flight_prices(path: str | Path, schema: Schema) -> pd.DataFrame:
    """Read a Clean_Dataset.csv file into the flight schema's features plus the fare."""
    raw = _read_layout(path, set(FLIGHT_COLUMNS) | {FLIGHT_TARGET}, "Clean_Dataset.csv")
    absent = [name for name in FLIGHT_COLUMNS.values() if name not in schema.feature_names]
    if absent:
        raise LayoutError(f"{path}: the flight-price table (Clean_Dataset.csv layout), but "
                          f"the schema {schema.name!r} has no feature {absent[0]!r}: set "
                          "SCHEMA_PATH=core/schemas/flights.yaml")
    out = pd.DataFrame(index=raw.index)
    for source, name in FLIGHT_COLUMNS.items():
        column = raw[source].str.strip()
        feat = schema.feature(name)
        if source == "stops":
            unknown = sorted(set(column) - set(STOP_CODES))
            if unknown:
                raise LayoutError(f"{source}: unexpected values {unknown} "
                                  f"(expected {', '.join(STOP_CODES)})")
            out[name] = column.map(STOP_CODES).astype(int)
        elif feat.kind == "categorical":
            unknown = sorted(set(column) - set(feat.values))
            if unknown:
                raise LayoutError(f"{source}: values the schema ({name}) does not allow: "
                                  f"{unknown}")
            out[name] = column
        else:
            numbers = pd.to_numeric(column, errors="coerce")
            if numbers.isna().any():
                raise LayoutError(f"{source}: not a number: {column[numbers.isna()].iloc[0]!r}")
            out[name] = numbers.astype(int) if feat.kind == "integer" else numbers.astype(float)
    out[schema.target] = raw[FLIGHT_TARGET].str.strip()  # checked by the task (numbers)
    return out[[*schema.feature_names, schema.target]]


def read_schema_csv(path: str | Path, schema: Schema) -> pd.DataFrame:
    """Read a CSV already in the schema's layout (as the generator writes it)."""
    frame = pd.read_csv(path)
    missing = [c for c in (*schema.feature_names, schema.target) if c not in frame.columns]
    if missing:
        raise LayoutError(f"{path}: missing columns {missing}")
    for feat in schema.features:
        if feat.kind == "ordinal":
            frame[feat.name] = frame[feat.name].astype("Int64")
    return frame[[*schema.feature_names, schema.target]]


def load_dataset(path: str | Path, schema: Schema | None = None) -> pd.DataFrame:
    """Read a training table: a Kaggle layout (BankChurners, Clean_Dataset) or the
    schema's own layout.

    Its target is checked against the schema's task here, where the file is known
    (core.task.TargetInvalid names the file, the field and what is supported), so a table
    the task cannot learn from never reaches the split or the search."""
    schema = schema or Schema.load()
    header = pd.read_csv(path, nrows=0).columns
    if TARGET_COLUMN in header:
        frame = load_bankchurners(path, schema)
    elif FLIGHT_CODE_COLUMN in header:
        frame = load_flight_prices(path, schema)
    else:
        frame = read_schema_csv(path, schema)
    frame[schema.target] = task_of(schema).check_target(frame[schema.target], str(path))
    return frame
