"""The schema file and record validation: every problem names its field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core.schema import RecordInvalid, Schema, SchemaError, model_frame
from tests.factories import valid_record


def problems(schema: Schema, record: object) -> dict[str, str]:
    with pytest.raises(RecordInvalid) as info:
        schema.validate_record(record)
    return {p.field: p.problem for p in info.value.problems}


def test_demo_schema_has_the_request_fields_users_send(schema: Schema) -> None:
    assert schema.feature_names == [
        "customer_age", "gender", "dependent_count", "education_level", "marital_status",
        "income_category", "card_category", "months_on_book", "total_relationship_count",
        "credit_limit", "total_revolving_bal",
    ]
    assert schema.target == "churn"
    assert schema.categorical_features == ["gender", "marital_status", "card_category"]
    assert schema.feature("education_level").nullable
    assert schema.feature("income_category").nullable
    assert not schema.feature("customer_age").nullable
    assert schema.feature("dependent_count").max == 5
    assert len(schema.feature("education_level").levels) == 6
    assert len(schema.feature("income_category").levels) == 5


def test_valid_record_is_returned_in_canonical_types(schema: Schema) -> None:
    clean = schema.validate_record(valid_record(customer_age=45.0, credit_limit=5000))
    assert clean["customer_age"] == 45 and isinstance(clean["customer_age"], int)
    assert clean["credit_limit"] == 5000.0 and isinstance(clean["credit_limit"], float)


def test_nullable_ordinals_accept_null(schema: Schema) -> None:
    clean = schema.validate_record(valid_record(education_level=None, income_category=None))
    assert clean["education_level"] is None and clean["income_category"] is None


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"customer_age": "45"}, "customer_age", "must be an integer"),
        ({"customer_age": 45.5}, "customer_age", "must be an integer"),
        ({"customer_age": True}, "customer_age", "must be an integer"),
        ({"customer_age": 7}, "customer_age", ">= 18"),
        ({"dependent_count": 6}, "dependent_count", "<= 5"),
        ({"education_level": 6}, "education_level", "between 0 and 5"),
        ({"income_category": -1}, "income_category", "between 0 and 4"),
        ({"gender": "X"}, "gender", "unknown category 'X'"),
        ({"card_category": "Blue"}, "card_category", "unknown category"),
        ({"card_category": 1}, "card_category", "must be a string"),
        ({"gender": None}, "gender", "must not be null"),
        ({"credit_limit": float("inf")}, "credit_limit", "finite"),
        ({"credit_limit": -1.0}, "credit_limit", ">= 0"),
        ({"credit_limit": [1]}, "credit_limit", "must be a number"),
    ],
)
def test_bad_values_are_named(schema: Schema, changes: dict, field: str, words: str) -> None:
    found = problems(schema, valid_record(**changes))
    assert list(found) == [field]
    assert words in found[field]


def test_missing_and_extra_fields_are_all_reported(schema: Schema) -> None:
    record = valid_record(surname="Smith")
    del record["gender"], record["credit_limit"]
    found = problems(schema, record)
    assert found == {"gender": "is required", "credit_limit": "is required",
                     "surname": "is not a field of this model"}


def test_a_non_object_is_refused(schema: Schema) -> None:
    assert "must be a JSON object, got array" in problems(schema, [1, 2])["body"]
    assert "got string" in problems(schema, "hello")["body"]


def test_batch_positions_prefix_the_field(schema: Schema) -> None:
    with pytest.raises(RecordInvalid) as info:
        schema.validate_record(valid_record(gender="?"), where="[7].")
    assert info.value.problems[0].field == "[7].gender"


def test_schema_round_trips_through_a_dict(schema: Schema) -> None:
    assert Schema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"target": {"name": "y"}, "features": []}, "no features"),
        ({"features": [{"name": "a", "kind": "integer"}]}, "target.name"),
        ({"target": {"name": "y"}, "features": [{"name": "a", "kind": "text"}]}, "kind"),
        ({"target": {"name": "y"}, "features": [{"name": "a", "kind": "categorical"}]},
         "values"),
        ({"target": {"name": "a"}, "features": [{"name": "a", "kind": "float"}]}, "target"),
    ],
)
def test_invalid_schema_files_are_refused(raw: dict, words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        Schema.from_dict(raw)


def test_model_frame_makes_numbers_float_with_nan_for_null(schema: Schema) -> None:
    frame = model_frame(schema, [valid_record(education_level=None)])
    assert frame["education_level"].isna().all()
    assert frame["customer_age"].dtype == "float64"
    assert frame["gender"].tolist() == ["M"]


# --- batches: checked column by column, answered as record by record --------------------

EDGE_VALUES = [None, True, False, 0, 1, -1, 3, 2.0, 2.5, 45, 45.0, 12691.0, 12691, -5.0,
               10**400, 2**60, 1e308, float("inf"), float("nan"), "M", "F", "blue", "gold",
               "married", "unknown", "", "x", [], {}]


def record_by_record(schema: Schema, items: list) -> tuple[list, list]:
    records, found = [], []
    for i, item in enumerate(items):
        try:
            records.append(schema.validate_record(item, where=f"[{i}]."))
        except RecordInvalid as exc:
            found.extend(exc.problems)
    return records, found


@pytest.mark.parametrize("seed", range(40))
def test_a_batch_gets_the_answer_record_by_record_validation_gives(
    schema: Schema, seed: int
) -> None:
    """Random batches with a few odd values (wrong types, bools, huge and non-canonical
    numbers, nulls, unknown categories, missing and extra fields): validate_batch gives
    the records, or the problems, that validating each record gives."""
    import random

    rng = random.Random(seed)
    items: list = [valid_record(customer_age=rng.randint(26, 73),
                                credit_limit=float(rng.randint(1438, 34516)))
                   for _ in range(rng.choice([16, 40, 200]))]
    for _ in range(rng.choice([0, 0, 1, 3])):  # a third of the batches stay valid
        item = items[rng.randrange(len(items))]
        change = rng.random()
        name = rng.choice(schema.feature_names)
        if change < 0.7:
            item[name] = rng.choice(EDGE_VALUES)
        elif change < 0.8:
            del item[name]
        elif change < 0.9:
            item["extra_field"] = 1
        else:
            items[rng.randrange(len(items))] = rng.choice(EDGE_VALUES)
    expected_records, expected_problems = record_by_record(schema, items)
    if expected_problems:
        with pytest.raises(RecordInvalid) as info:
            schema.validate_batch(items)
        assert info.value.problems == expected_problems
    else:
        batch = schema.validate_batch(items)
        assert batch.records == expected_records
        for got, want in zip(batch.records, expected_records, strict=True):
            assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


def test_a_clean_batch_is_checked_column_by_column(schema: Schema) -> None:
    items = [valid_record(customer_age=30 + i % 40, education_level=None if i % 3 else 2)
             for i in range(50)]
    batch = schema.validate_batch(items)
    assert batch.columns is not None  # the fast path was taken
    assert batch.records == items
    assert batch.columns["customer_age"].tolist() == [30.0 + i % 40 for i in range(50)]
    assert sum(map(math.isnan, batch.columns["education_level"])) == 33
    assert batch.columns["gender"] == ["M"] * 50
    # A float NaN is not a null: refused, as record by record (JSON cannot carry one).
    with pytest.raises(RecordInvalid) as info:
        schema.validate_batch([*items[:20], valid_record(credit_limit=float("nan"))])
    assert [p.field for p in info.value.problems] == ["[20].credit_limit"]
    # An int where a float is wanted is valid, but canonicalised record by record.
    items[7]["credit_limit"] = 5000
    batch = schema.validate_batch(items)
    assert batch.columns is None
    assert batch.records[7]["credit_limit"] == 5000.0
    assert type(batch.records[7]["credit_limit"]) is float


def test_a_number_past_what_the_model_computes_in_is_refused_naming_the_field() -> None:
    """XGBoost computes in 32-bit floats: 1e39 is finite in JSON but infinite there, and
    its explanations failed on it (a 500, found by fuzzing a schema without bounds)."""
    from core.schema import RecordInvalid

    unbounded = Schema.from_dict({"name": "t", "target": {"name": "y"},
                                  "features": [{"name": "x", "kind": "float"}]})
    for huge in (1e39, -1.7976931348623157e308, 10**40):
        with pytest.raises(RecordInvalid) as refused:
            unbounded.validate_record({"x": huge})
        assert refused.value.problems[0].field == "x"
        assert "32-bit floats" in refused.value.problems[0].problem
        with pytest.raises(RecordInvalid):
            unbounded.validate_batch([{"x": 1.0}, {"x": huge}])
    assert unbounded.validate_record({"x": 3.0e38}) == {"x": 3.0e38}


def test_a_feature_named_like_a_column_of_the_log_is_refused() -> None:
    """The log keeps `value` (a regression model's number), `probability`, `actual`...
    beside the features: a feature of one of those names would be overwritten."""
    for name in ("value", "prediction", "actual"):
        with pytest.raises(SchemaError, match=f"features: '{name}' is a column the prediction"):
            Schema.from_dict({"name": "t", "target": {"name": "y"},
                              "features": [{"name": name, "kind": "float"}]})


# --- what the model is for: intended use and limitations ------------------------------

MINIMAL = {"name": "t", "target": {"name": "y"}, "features": [{"name": "x", "kind": "float"}]}


def test_intended_use_and_limitations_parse_from_a_string_or_a_list_and_round_trip() -> None:
    declared = Schema.from_dict(MINIMAL | {
        "intended_use": "Ranking customers for a retention offer.",
        "limitations": ["Generated data.", "  Uses gender\n   and age.  "]})
    assert declared.intended_use == ("Ranking customers for a retention offer.",)
    # Whitespace folded, as YAML's multi-line strings leave it.
    assert declared.limitations == ("Generated data.", "Uses gender and age.")
    raw = declared.to_dict()
    assert raw["intended_use"] == ["Ranking customers for a retention offer."]
    assert raw["limitations"] == ["Generated data.", "Uses gender and age."]
    assert Schema.from_dict(raw) == declared
    # Through JSON too: the schema travels with every model version as JSON metadata.
    import json

    assert Schema.from_dict(json.loads(json.dumps(raw))) == declared
    # Neither declared: empty, and absent from the dict (a version's schema as before).
    bare = Schema.from_dict(MINIMAL)
    assert bare.intended_use == () and bare.limitations == ()
    assert "intended_use" not in bare.to_dict() and "limitations" not in bare.to_dict()
    assert Schema.from_dict(MINIMAL | {"limitations": None, "intended_use": []}) == bare
    # One statement given to the constructor as a string is a list of one.
    assert Schema("t", "y", bare.features, limitations="One.").limitations == ("One.",)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"intended_use": 3}, "intended_use: must be a string or a list of strings, got number"),
        ({"limitations": {"a": "b"}}, "limitations: must be a string or a list of strings"),
        ({"limitations": True}, "limitations: must be a string or a list of strings, got "
                                "boolean"),
        ({"limitations": ["fine", 7]}, r"limitations\[1\]: must be a string, got number"),
        ({"intended_use": ["a", ["nested"]]}, r"intended_use\[1\]: must be a string, got array"),
        ({"limitations": ["fine", "  "]}, r"limitations\[1\]: must not be blank"),
        ({"intended_use": ""}, "intended_use: must not be blank"),
    ],
)
def test_a_wrong_intended_use_or_limitation_is_refused_naming_the_field(changes: dict,
                                                                         words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        Schema.from_dict(MINIMAL | changes)


def test_a_schema_file_with_a_wrong_limitation_names_the_file_and_the_field(
        tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: t\ntarget: {name: y}\nfeatures: [{name: x, kind: float}]\n"
                    "limitations:\n  - fine\n  - {oops: 1}\n")
    with pytest.raises(SchemaError, match=r"mine.yaml: limitations\[1\]: must be a string"):
        Schema.load(path)


@pytest.mark.parametrize("file", ["churn.yaml", "flights.yaml"])
def test_the_shipped_schemas_describe_every_feature_and_declare_their_use(file: str) -> None:
    """The try-it page and the model card show each feature's description, and the card
    the schema's intended use and limitations."""
    from core.schema import DEFAULT_SCHEMA_PATH

    shipped = Schema.load(DEFAULT_SCHEMA_PATH.parent / file)
    assert [f.name for f in shipped.features if not f.description.strip()] == []
    assert all(len(f.description) <= 80 for f in shipped.features)  # short, for a form
    assert shipped.intended_use and shipped.limitations
    assert any("generated" in text for text in (*shipped.intended_use, *shipped.limitations))
    assert Schema.from_dict(shipped.to_dict()) == shipped


def test_the_churn_schema_says_what_using_gender_and_age_means(schema: Schema) -> None:
    assert {"gender", "customer_age"} <= set(schema.feature_names)
    assert any("gender and age" in text for text in schema.limitations)


def test_the_flights_schema_names_its_currency_cities_and_classes() -> None:
    from core.schema import DEFAULT_SCHEMA_PATH

    flights = Schema.load(DEFAULT_SCHEMA_PATH.parent / "flights.yaml")
    words = " ".join((*flights.intended_use, *flights.limitations))
    assert "INR" in words
    for city in flights.feature("source_city").values:
        assert city in words
    # The classes it knows, and which airlines sell business in its data.
    assert "economy or business" in words and "business class" in words
    assert "six airlines" in words and "Vistara and Air_India" in words
