"""Test data, made in one place."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from core.schema import Schema
from simulation.generator import generate


def valid_record(**changes: Any) -> dict[str, Any]:
    """A request record the demo schema accepts; keyword arguments replace fields."""
    record: dict[str, Any] = {
        "customer_age": 45,
        "gender": "M",
        "dependent_count": 3,
        "education_level": 3,
        "marital_status": "married",
        "income_category": 2,
        "card_category": "blue",
        "months_on_book": 39,
        "total_relationship_count": 5,
        "credit_limit": 12691.0,
        "total_revolving_bal": 777.0,
    }
    record.update(changes)
    return record


def write_training_csv(path: Path, schema: Schema, rows: int = 4000, seed: int = 42) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(rows, seed, schema=schema).to_csv(path, index=False)
    return path


KAGGLE_HEADER = [
    "CLIENTNUM", "Attrition_Flag", "Customer_Age", "Gender", "Dependent_count",
    "Education_Level", "Marital_Status", "Income_Category", "Card_Category", "Months_on_book",
    "Total_Relationship_Count", "Months_Inactive_12_mon", "Contacts_Count_12_mon",
    "Credit_Limit", "Total_Revolving_Bal", "Avg_Open_To_Buy", "Total_Amt_Chng_Q4_Q1",
    "Total_Trans_Amt", "Total_Trans_Ct", "Total_Ct_Chng_Q4_Q1", "Avg_Utilization_Ratio",
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_"
    "Dependent_count_Education_Level_Months_Inactive_12_mon_1",
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_"
    "Dependent_count_Education_Level_Months_Inactive_12_mon_2",
]

# Rows in the real file's layout, values as the real file spells them.
KAGGLE_ROWS = [
    ["768805383", "Existing Customer", "45", "M", "3", "High School", "Married", "$60K - $80K",
     "Blue", "39", "5", "1", "3", "12691", "777", "11914", "1.335", "1144", "42", "1.625",
     "0.061", "9.3448e-05", "0.99991"],
    ["818770008", "Existing Customer", "49", "F", "5", "Graduate", "Single", "Less than $40K",
     "Blue", "44", "6", "1", "2", "8256", "864", "7392", "1.541", "1291", "33", "3.714",
     "0.105", "5.6861e-05", "0.99994"],
    ["713982108", "Attrited Customer", "51", "M", "3", "Unknown", "Married", "$80K - $120K",
     "Gold", "36", "4", "1", "0", "3418", "0", "3418", "2.594", "1887", "20", "2.333", "0",
     "0.99758", "0.0024164"],
    ["769911858", "Attrited Customer", "40", "F", "4", "Doctorate", "Unknown", "Unknown",
     "Platinum", "34", "3", "4", "1", "3313", "2517", "796", "1.405", "1171", "20", "2.333",
     "0.76", "0.99521", "0.0047852"],
    ["709106358", "Existing Customer", "40", "M", "3", "Uneducated", "Divorced", "$120K +",
     "Silver", "21", "5", "1", "0", "4716", "0", "4716", "2.175", "816", "28", "2.5", "0",
     "2.1081e-05", "0.99998"],
    ["713061558", "Existing Customer", "44", "M", "2", "Post-Graduate", "Married",
     "$40K - $60K", "Blue", "36", "3", "1", "2", "4010", "1247", "2763", "1.376", "1088",
     "24", "0.846", "0.311", "1.3366e-04", "0.99987"],
    ["810347208", "Existing Customer", "51", "M", "4", "College", "Married", "$120K +",
     "Gold", "46", "6", "1", "3", "34516", "2264", "32252", "1.975", "1330", "31", "0.722",
     "0.066", "2.2538e-04", "0.99977"],
]


def write_kaggle_csv(path: Path, rows: list[list[str]] | None = None,
                     header: list[str] | None = None) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header or KAGGLE_HEADER)
        writer.writerows(KAGGLE_ROWS if rows is None else rows)
    return path


# A number to predict: scikit-learn's diabetes progression table (442 rows, 10 features, a
# target from 25 to 346), the one issue 25 tried, as a business of its own.
DIABETES_MODEL = "diabetes-progression"
DIABETES_TARGET = "progression"


def diabetes_schema() -> dict:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True)
    return {"name": "diabetes", "task": "regression",
            "description": "Disease progression one year after baseline.",
            "target": {"name": DIABETES_TARGET, "min": 0, "max": 400, "unit": "points"},
            "features": [{"name": c, "kind": "float"} for c in bunch.feature_names]}


def diabetes_env(home: Path) -> dict[str, str]:
    """The environment of a onebox process serving the diabetes business from `home`."""
    return {"ONEBOX_HOME": str(home), "MODEL_NAME": DIABETES_MODEL,
            "SCHEMA_PATH": str(home / "diabetes.yaml"),
            "DATA_PATH": str(home / "data" / "diabetes.csv")}


def write_diabetes_home(home: Path) -> dict[str, str]:
    """The diabetes table and its schema under `home`; returns diabetes_env(home)."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": DIABETES_TARGET})
    (home / "data").mkdir(parents=True, exist_ok=True)
    frame.to_csv(home / "data" / "diabetes.csv", index=False)
    (home / "diabetes.yaml").write_text(yaml.safe_dump(diabetes_schema()))
    return diabetes_env(home)
