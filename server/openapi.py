"""The predictor's OpenAPI 3.0 document, generated from the served model's schema.

The request record is not written by hand: it is derived from the `core.schema.Schema`
that travels with the served model version, so the document a client reads is the
one the predictor validates against, and it changes when the served version does.
The response and error shapes mirror what `server.app` returns; the fuzz test
(tests/test_openapi.py) holds the two together.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from core.schema import MODEL_FLOAT_MAX, Feature, Schema
from core.task import task_of
from server.model_source import FROM_LOCAL_CACHE, FROM_REGISTRY, ServedModel

OPENAPI_VERSION = "3.0.3"
JSON = "application/json"
CSV = "text/csv"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _bound(feature: Feature, value: float) -> int | float:
    # Integer features get integer bounds, so generators and readers see 18, not 18.0.
    if feature.kind == "integer" and value.is_integer():
        return int(value)
    return value


def feature_schema(feature: Feature) -> dict[str, Any]:
    """The JSON schema of one feature's value in a request record."""
    out: dict[str, Any]
    if feature.kind == "categorical":
        values: list[str | None] = list(feature.values)
        # OpenAPI 3.0: a nullable enum must list null among its values.
        out = {"type": "string", "enum": [*values, None] if feature.nullable else values}
    elif feature.kind == "ordinal":
        codes = ", ".join(f"{i} = {level}" for i, level in enumerate(feature.levels))
        out = {"type": "integer", "minimum": 0, "maximum": len(feature.levels) - 1,
               "x-levels": list(feature.levels)}
        description = f"Ordinal code: {codes}."
        out["description"] = f"{feature.description} {description}".strip()
    else:
        out = {"type": "integer" if feature.kind == "integer" else "number"}
        # Without a declared bound, the largest size the model computes in (32-bit floats):
        # the validation refuses a number past it, so the document says so (as a float even
        # for an integer feature: a 39-digit integer bound trips int64 code generators).
        out["minimum"] = (-MODEL_FLOAT_MAX if feature.min is None
                          else _bound(feature, feature.min))
        out["maximum"] = (MODEL_FLOAT_MAX if feature.max is None
                          else _bound(feature, feature.max))
    if feature.description and "description" not in out:
        out["description"] = feature.description
    if feature.nullable:
        out["nullable"] = True
    return out


def example_record(schema: Schema) -> dict[str, Any]:
    """A record the schema accepts: the first category, the lowest ordinal code, the
    middle of each numeric range (or its one bound, or 0)."""
    record: dict[str, Any] = {}
    for feature in schema.features:
        if feature.kind == "categorical":
            record[feature.name] = feature.values[0]
        elif feature.kind == "ordinal":
            record[feature.name] = 0
        else:
            low, high = feature.min, feature.max
            if low is not None and high is not None:
                middle = (low + high) / 2
            else:
                middle = low if low is not None else high if high is not None else 0.0
            record[feature.name] = round(middle) if feature.kind == "integer" else middle
    return record


def record_schema(schema: Schema) -> dict[str, Any]:
    """One request record: every feature required, nothing else allowed."""
    return {
        "type": "object",
        "description": f"One row of {schema.name!r}: {schema.description}".strip(),
        "properties": {f.name: feature_schema(f) for f in schema.features},
        "required": schema.feature_names,
        "additionalProperties": False,
        "example": example_record(schema),
    }


def _error_responses(*statuses: tuple[int, str]) -> dict[str, Any]:
    return {str(status): {"description": description,
                          "content": {JSON: {"schema": _ref("Error")}}}
            for status, description in statuses}


def _components(schema: Schema, max_batch_records: int) -> dict[str, Any]:
    nullable_number = {"type": "number", "nullable": True}
    task = task_of(schema)
    answer_columns = list(task.csv_answer_columns)
    prediction = {
        "prediction_id": {"type": "string", "format": "uuid",
                          "description": "Send it back with the real outcome to POST /feedback."},
        **task.answer_schema(),
    }
    answered = [name for name in prediction if name not in task.optional_answers]
    taken_outcome, answered_outcome = task.outcome_schema()
    explanation = {
        "type": "object",
        "description": "The score split by feature (XGBoost's TreeSHAP): base + the sum of "
                       f"contributions = score, in {task.explanation_unit}; "
                       f"{task.score_meaning}. Sent with ?explain=true.",
        "properties": {
            "unit": {"type": "string", "enum": [task.explanation_unit]},
            "base": {"type": "number"},
            "score": {"type": "number"},
            "contributions": {"type": "object",
                              "properties": {name: {"type": "number"}
                                             for name in schema.feature_names},
                              "required": schema.feature_names,
                              "additionalProperties": False},
        },
        "required": ["unit", "base", "score", "contributions"],
        "additionalProperties": False,
    }
    prediction_with_explanation = {**prediction, "explanation": _ref("Explanation")}
    return {
        "Record": record_schema(schema),
        "Explanation": explanation,
        "Batch": {"type": "array", "items": _ref("Record"), "minItems": 1,
                  "maxItems": max_batch_records},
        "ModelRef": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
            "required": ["name", "version"],
            "additionalProperties": False,
        },
        "Prediction": {
            "type": "object",
            "properties": prediction_with_explanation,
            "required": answered,
            "additionalProperties": False,
        },
        "SinglePrediction": {
            "type": "object",
            "properties": {**prediction_with_explanation, "model": _ref("ModelRef")},
            "required": [*answered, "model"],
            "additionalProperties": False,
        },
        "BatchPrediction": {
            "type": "object",
            "properties": {
                "predictions": {"type": "array", "items": _ref("Prediction"), "minItems": 1,
                                "description": "One answer per record, in request order."},
                "model": _ref("ModelRef"),
            },
            "required": ["predictions", "model"],
            "additionalProperties": False,
        },
        "Feedback": {
            "type": "object",
            "properties": {
                "prediction_id": {"type": "string", "format": "uuid"},
                schema.target: taken_outcome,
            },
            "required": ["prediction_id", schema.target],
            "additionalProperties": False,
        },
        "FeedbackAccepted": {
            "type": "object",
            "properties": {
                "prediction_id": {"type": "string", "format": "uuid"},
                schema.target: answered_outcome,
                "status": {"type": "string", "enum": ["recorded", "unchanged"]},
            },
            "required": ["prediction_id", schema.target, "status"],
            "additionalProperties": False,
        },
        "Problem": {
            "type": "object",
            "properties": {
                "field": {"type": "string", "minLength": 1,
                          "description": "The field at fault: a feature name, `[i].name` "
                                         "in a batch, `body`, or `request`."},
                "problem": {"type": "string", "minLength": 1},
            },
            "required": ["field", "problem"],
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "minLength": 1},
                "problems": {"type": "array", "items": _ref("Problem"), "minItems": 1},
            },
            "required": ["error", "problems"],
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                # The build this replica runs (ONEBOX_RELEASE, set in the image).
                "release": {"type": "string"},
                "model": _ref("ModelRef"),
                "model_source": {"type": "string", "enum": [FROM_REGISTRY, FROM_LOCAL_CACHE]},
                "registry_error": {"type": "string", "nullable": True},
                "prediction_log": {
                    "type": "object",
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "store_available": {"type": "boolean", "nullable": True},
                        # Why the store takes no rows: unreachable, or its tables not
                        # migrated to this version's (the setup step migrates them).
                        "store_error": {"type": "string", "nullable": True},
                        "backlog": {"type": "integer", "minimum": 0},
                        "spooled_rows": {"type": "integer", "minimum": 0},
                        # Store away and spool unwritable: rows not kept, and why.
                        "dropped_rows": {"type": "integer", "minimum": 0},
                        "spool_error": {"type": "string", "nullable": True},
                        # The journal cannot be written (server/journal.py).
                        "journal_error": {"type": "string", "nullable": True},
                    },
                    "required": ["enabled", "store_available", "store_error", "backlog",
                                 "spooled_rows", "dropped_rows", "spool_error",
                                 "journal_error"],
                    "additionalProperties": False,
                },
            },
            "required": ["status", "release", "model", "model_source", "registry_error",
                         "prediction_log"],
            "additionalProperties": False,
        },
        "ModelInfo": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "source": {"type": "string", "enum": [FROM_REGISTRY, FROM_LOCAL_CACHE]},
                "loaded_at": {"type": "number", "description": "Unix time."},
                "last_check": {**nullable_number, "description": "Unix time of the last "
                               "look at the registry's alias."},
                "fast_path": {"type": "boolean"},
                "task": {"type": "string", "enum": [task.name],
                         "description": "What the model predicts (the schema's task)."},
                "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                              "nullable": True, "description": "The decision threshold of "
                              "a binary model; null for a number."},
                "schema": {"type": "object", "description": "The served version's dataset "
                           "schema (core.schema.Schema.to_dict)."},
                "explainable": {"type": "boolean",
                                "description": "Whether /predict?explain=true can answer."},
                "typical_record": {**_ref("Record"),
                                   "description": "A typical record of the version's "
                                                  "training sample (medians and modes)."},
                "max_batch_records": {"type": "integer", "minimum": 1},
                "csv_answer_columns": {
                    "type": "array", "items": {"type": "string", "enum": answer_columns},
                    "minItems": len(answer_columns), "maxItems": len(answer_columns),
                    "description": "The columns a CSV file scored by POST /predict gets "
                                   "after its own, in this order (then, with ?explain=true, "
                                   "a contribution_<feature> column per feature)."},
            },
            "required": ["name", "version", "source", "loaded_at", "last_check", "fast_path",
                         "task", "threshold", "schema", "explainable", "typical_record",
                         "max_batch_records", "csv_answer_columns"],
            "additionalProperties": False,
        },
    }


def build_document(schema: Schema, *, model_name: str, model_version: str,
                   max_batch_records: int, max_body_bytes: int,
                   api_keys: bool = False) -> dict[str, Any]:
    """The whole OpenAPI document for one served model version and the request limits;
    with `api_keys`, the bearer keys each operation asks for."""
    document = _document(schema, model_name=model_name, model_version=model_version,
                         max_batch_records=max_batch_records, max_body_bytes=max_body_bytes)
    if api_keys:
        _add_key_security(document)
    return document


# Which scope each operation's key needs (None: any valid key); the rest are open.
KEY_SCOPES = {("/predict", "post"): "predict", ("/feedback", "post"): "feedback",
              ("/model", "get"): None, ("/openapi.json", "get"): None}


def _add_key_security(document: dict[str, Any]) -> None:
    document["components"]["securitySchemes"] = {"apiKey": {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`obx_<id>_<secret>`); its scopes say which operations "
                       "it may call.",
    }}
    for (path, method), scope in KEY_SCOPES.items():
        operation = document["paths"][path][method]
        operation["security"] = [{"apiKey": []}]
        needs = f"a key with the `{scope}` scope" if scope else "any valid key"
        operation["description"] = f"Needs {needs}."
        operation["responses"].update(_error_responses(
            (401, "The API key is missing, malformed, unknown or expired."),
            (403, "The API key lacks this operation's scope."),
        ) if scope else _error_responses(
            (401, "The API key is missing, malformed, unknown or expired.")))


def _document(schema: Schema, *, model_name: str, model_version: str,
              max_batch_records: int, max_body_bytes: int) -> dict[str, Any]:
    invalid_input = (
        (400, "The body is empty or not JSON (NaN and Infinity are not JSON)."),
        (413, f"The body is over {max_body_bytes} bytes, or the batch is over "
              f"{max_batch_records} records."),
        (422, "The JSON does not match the schema; `problems` names each field."),
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "onebox predictor",
            "version": f"{model_name} v{model_version}",
            "description": (
                f"Scores {schema.name!r} records with model {model_name!r} version "
                f"{model_version}. The record schema is the one this version was trained "
                "with; it changes when the served version does. Every client error is a "
                "4xx whose body names each field at fault and the problem."
            ),
        },
        "paths": {
            "/predict": {"post": {
                "operationId": "predict",
                "summary": "Score one record, a batch of records, or a CSV file of rows",
                "parameters": [{
                    "name": "explain", "in": "query", "required": False,
                    "schema": {"type": "boolean", "default": False},
                    "description": "Add each feature's contribution to the score to every "
                                   "answer (JSON: `explanation`; CSV: a "
                                   "`contribution_<feature>` column per feature).",
                }],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": {"oneOf": [_ref("Record"), _ref("Batch")]}},
                        CSV: {"schema": {"type": "string", "description": (
                            "A header line naming every feature (other columns come back "
                            "as sent), then one row per record; an empty cell is null, an "
                            "ordinal takes its level's name or code. Problems name "
                            "`line N.<feature>`.")}},
                    },
                },
                "responses": {
                    "200": {"description": "One answer (a record was sent), one per record "
                                           "(a batch was sent), or the CSV file back with "
                                           f"{', '.join(task_of(schema).csv_answer_columns)} "
                                           "columns (a CSV file was sent).",
                            "content": {JSON: {"schema": {"oneOf": [
                                _ref("SinglePrediction"), _ref("BatchPrediction")]}},
                                CSV: {"schema": {"type": "string"}}}},
                    **_error_responses(*invalid_input),
                },
            }},
            "/feedback": {"post": {
                "operationId": "feedback",
                "summary": "Record the real outcome of a prediction",
                "requestBody": {"required": True,
                                "content": {JSON: {"schema": _ref("Feedback")}}},
                "responses": {
                    "200": {"description": "Stored (or the same outcome was already there).",
                            "content": {JSON: {"schema": _ref("FeedbackAccepted")}}},
                    **_error_responses(
                        *invalid_input,
                        (404, "No prediction with this id."),
                        (409, "A different outcome was already recorded for this prediction."),
                        (503, "The prediction store is unavailable; retry later."),
                    ),
                },
            }},
            "/": {"get": {
                "operationId": "tryPage",
                "summary": "A page to try the model: a form from the schema, a CSV upload",
                "responses": {"200": {"description": "The page (it asks for an API key "
                                                     "when the predictor does).",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}},
            }},
            "/health": {"get": {
                "operationId": "health",
                "summary": "Liveness, the served model and the prediction log's state",
                "responses": {"200": {"description": "Serving.",
                                      "content": {JSON: {"schema": _ref("Health")}}}},
            }},
            "/model": {"get": {
                "operationId": "model",
                "summary": "The served model version, its threshold and schema",
                "responses": {"200": {"description": "The served model.",
                                      "content": {JSON: {"schema": _ref("ModelInfo")}}}},
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics, summed across workers",
                "responses": {"200": {"description": "Prometheus text exposition format.",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.0 document.",
                                      "content": {JSON: {"schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": _components(schema, max_batch_records)},
    }


class OpenApiDocuments:
    """The serialized document of the served version, built once per version."""

    def __init__(self, *, max_batch_records: int, max_body_bytes: int, api_keys: bool = False):
        self.max_batch_records = max_batch_records
        self.max_body_bytes = max_body_bytes
        self.api_keys = api_keys
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._body = b""

    def for_served(self, served: ServedModel) -> bytes:
        key = (served.model.name, served.version)
        with self._lock:
            if key != self._key:
                document = build_document(
                    served.model.schema, model_name=key[0], model_version=key[1],
                    max_batch_records=self.max_batch_records,
                    max_body_bytes=self.max_body_bytes, api_keys=self.api_keys)
                self._body = json.dumps(document).encode()
                self._key = key
            return self._body
