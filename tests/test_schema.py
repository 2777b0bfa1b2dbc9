"""The schema file and record validation: every problem names its field."""

from __future__ import annotations

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
