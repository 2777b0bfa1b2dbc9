"""Read the real Kaggle "BankChurners.csv" layout into the schema's columns.

Names become snake_case, category strings the schema's values, income and
education their ordinal codes, "Unknown" null.  The two trailing
`Naive_Bayes_Classifier_*` columns are another model's outputs that leak the
label, so they are dropped, as are the columns the schema does not use.
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


def load_bankchurners(path: str | Path, schema: Schema | None = None) -> pd.DataFrame:
    """Read a BankChurners.csv file into the schema's features plus the target."""
    schema = schema or Schema.load()
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted((set(COLUMN_NAMES) | {TARGET_COLUMN}) - set(raw.columns))
    if missing:
        raise LayoutError(f"{path}: missing columns {missing}")
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
    """Read a training table: the Kaggle BankChurners layout or the schema's own layout.

    Its target is checked against the schema's task here, where the file is known
    (core.task.TargetInvalid names the file, the field and what is supported), so a table
    the task cannot learn from never reaches the split or the search."""
    schema = schema or Schema.load()
    header = pd.read_csv(path, nrows=0).columns
    frame = (load_bankchurners(path, schema) if TARGET_COLUMN in header
             else read_schema_csv(path, schema))
    frame[schema.target] = task_of(schema).check_target(frame[schema.target], str(path))
    return frame
