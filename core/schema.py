"""The dataset schema: features, their kinds and allowed values, and the target.

One schema file describes the table; training, the predictor's validation, the
drift column types and the simulator all read it.  The schema also travels with
every model version (as model metadata), so the predictor validates requests
against the schema the served model was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

DEFAULT_SCHEMA_PATH = Path(__file__).parent / "schemas" / "churn.yaml"

NUMERIC_KINDS = ("integer", "float")
KINDS = (*NUMERIC_KINDS, "ordinal", "categorical")
# What a model predicts: the probability of a 0/1 target, or a number.  What differs by
# task is decided in core.task; the schema only declares it.
TASKS = ("binary", "regression")
# The error a regression search minimises (the target's `metric`).
REGRESSION_METRICS = ("rmse", "mae")
TARGET_KEYS = {"name", "description", "positive_label", "min", "max", "unit", "metric"}
REGRESSION_ONLY_KEYS = ("min", "max", "unit", "metric")
# What the model is for and where it is not to be trusted: optional, each a string or a
# list of strings at the top level of the schema file; the model card shows them.
USE_KEYS = ("intended_use", "limitations")


class SchemaError(ValueError):
    """The schema file itself is invalid."""


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of a request."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class RecordInvalid(ValueError):
    """A record does not match the schema; `problems` names each field."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class ValidBatch:
    """A validated batch: the records with canonical values, and, when the batch was
    checked column by column, each feature's values as a column (numbers as float64
    with NaN for null, categories as a list), so the scorer need not read the records
    again."""

    records: list[dict[str, Any]]
    columns: dict[str, Any] | None = None


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    def check(self, value: Any) -> Any:
        """Return the value in its canonical Python type, or raise ValueError naming the problem."""
        if value is None:
            if self.nullable:
                return None
            raise ValueError("must not be null")
        if self.kind == "categorical":
            if not isinstance(value, str):
                raise ValueError(f"must be a string, one of {list(self.values)}")
            if value not in self.values:
                raise ValueError(f"unknown category {value!r}; allowed: {list(self.values)}")
            return value
        # Numbers: JSON booleans are ints in Python, but never a valid number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            expected = "an integer" if self.kind in ("integer", "ordinal") else "a number"
            raise ValueError(f"must be {expected}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        if isinstance(value, int) and not _fits_a_float(value):
            # The model sees every number as a float: a JSON integer beyond float range
            # would overflow there (a 500), so it is refused here.
            raise ValueError("must be a finite number, got an integer too large for one")
        if abs(value) > MODEL_FLOAT_MAX:
            # XGBoost computes in 32-bit floats: a larger number becomes infinite there,
            # which its explanations refuse (a 500 before this check, found by fuzzing a
            # schema without bounds).
            raise ValueError(f"must be at most {MODEL_FLOAT_MAX:.7g} in size (the model "
                             f"computes in 32-bit floats), got {value:g}")
        if self.kind in ("integer", "ordinal"):
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"must be an integer, got {value}")
                value = int(value)
        else:
            value = float(value)
        if self.kind == "ordinal":
            top = len(self.levels) - 1
            if not 0 <= value <= top:
                raise ValueError(
                    f"must be an ordinal code between 0 and {top} ({', '.join(self.levels)}), "
                    f"got {value}"
                )
            return value
        if self.min is not None and value < self.min:
            raise ValueError(f"must be >= {self.min:g}, got {value}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be <= {self.max:g}, got {value}")
        return value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "nullable": self.nullable}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.values:
            out["values"] = list(self.values)
        if self.levels:
            out["levels"] = list(self.levels)
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Feature:
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"a feature has no name: {dict(raw)}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise SchemaError(f"feature {name!r}: kind must be one of {KINDS}, got {kind!r}")
        values = tuple(raw.get("values") or ())
        levels = tuple(raw.get("levels") or ())
        if kind == "categorical" and not values:
            raise SchemaError(f"feature {name!r}: a categorical feature needs `values`")
        if kind == "ordinal" and not levels:
            raise SchemaError(f"feature {name!r}: an ordinal feature needs `levels`")
        unknown = set(raw) - {"name", "kind", "nullable", "min", "max", "values", "levels",
                              "description"}
        if unknown:
            raise SchemaError(f"feature {name!r}: unknown keys {sorted(unknown)}")
        return cls(
            name=name,
            kind=kind,
            nullable=bool(raw.get("nullable", False)),
            min=None if raw.get("min") is None else float(raw["min"]),
            max=None if raw.get("max") is None else float(raw["max"]),
            values=tuple(str(v) for v in values),
            levels=tuple(str(v) for v in levels),
            description=str(raw.get("description", "")),
        )


@dataclass(frozen=True)
class TargetSpec:
    """The target as declared: its task and, for a regression target, its range (either
    end optional), unit and the error the search minimises."""

    task: str = "binary"
    min: float | None = None
    max: float | None = None
    unit: str = ""
    metric: str = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("unit", "metric", "description"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, task: Any, raw: Mapping[str, Any]) -> TargetSpec:
        """The target's declaration, or SchemaError naming the field and what is supported."""
        if task not in TASKS:
            raise SchemaError(f"task: {task!r} is not supported; supported: "
                              f"{', '.join(TASKS)} (binary: a 0/1 target, its probability "
                              "predicted; regression: a numeric target)")
        unknown = sorted(set(raw) - TARGET_KEYS)
        if unknown:
            raise SchemaError(f"target: unknown keys {unknown}; allowed: {sorted(TARGET_KEYS)}")
        if task == "binary":
            given = [key for key in REGRESSION_ONLY_KEYS if raw.get(key) is not None]
            if given:
                raise SchemaError(f"target.{given[0]}: only a regression target has "
                                  f"{', '.join(REGRESSION_ONLY_KEYS)} (this schema's task "
                                  "is binary; declare `task: regression` for a number)")
        bounds = {}
        for key in ("min", "max"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise SchemaError(f"target.{key}: must be a finite number, got {value!r}")
            bounds[key] = None if value is None else float(value)
        if None not in bounds.values() and bounds["min"] >= bounds["max"]:
            raise SchemaError(f"target.min ({bounds['min']:g}) must be below target.max "
                              f"({bounds['max']:g})")
        metric = raw.get("metric")
        if task == "regression":
            metric = metric or REGRESSION_METRICS[0]
            if metric not in REGRESSION_METRICS:
                raise SchemaError(f"target.metric: {metric!r} is not supported; supported: "
                                  f"{', '.join(REGRESSION_METRICS)}")
        return cls(task=task, min=bounds["min"], max=bounds["max"],
                   unit=str(raw.get("unit") or ""), metric=metric or "",
                   description=str(raw.get("description") or ""))


@dataclass(frozen=True)
class Schema:
    name: str
    target: str
    features: tuple[Feature, ...]
    description: str = ""
    target_spec: TargetSpec = TargetSpec()
    # What the model is for, and where it is not to be trusted (the model card's "Intended
    # use and limitations"); empty: none declared.
    intended_use: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()
    _by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {f.name: f for f in self.features}
        if len(by_name) != len(self.features):
            raise SchemaError("feature names must be unique")
        if self.target in by_name:
            raise SchemaError(f"the target {self.target!r} is also listed as a feature")
        object.__setattr__(self, "_by_name", by_name)
        for key in USE_KEYS:  # one statement given as a string is a list of one
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else tuple(value))

    @property
    def task(self) -> str:
        """"binary" or "regression" (a schema that says nothing is binary, as every
        schema and model version was before the task was declared)."""
        return self.target_spec.task

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.is_categorical]

    @property
    def numeric_features(self) -> list[str]:
        """Integer, float and ordinal features: all go to the model as numbers."""
        return [f.name for f in self.features if not f.is_categorical]

    def feature(self, name: str) -> Feature:
        return self._by_name[name]

    def validate_record(self, record: Any, *, where: str = "") -> dict[str, Any]:
        """Return the record with canonical values, or raise RecordInvalid naming every bad field.

        `where` prefixes field names (e.g. "records[3].") so a batch error points at the row.
        """
        if not isinstance(record, Mapping):
            raise RecordInvalid(
                [FieldProblem(where.rstrip(".") or "body",
                              f"must be a JSON object, got {_json_type(record)}")]
            )
        problems: list[FieldProblem] = []
        clean: dict[str, Any] = {}
        for feat in self.features:
            if feat.name not in record:
                problems.append(FieldProblem(where + feat.name, "is required"))
                continue
            try:
                clean[feat.name] = feat.check(record[feat.name])
            except ValueError as exc:
                problems.append(FieldProblem(where + feat.name, str(exc)))
        for extra in sorted(set(record) - set(self._by_name), key=str):
            # An empty key is named `""`, so the problem still points at something visible.
            name = str(extra) or '""'
            problems.append(FieldProblem(where + name, "is not a field of this model"))
        if problems:
            raise RecordInvalid(problems)
        return clean

    def validate_batch(self, items: list[Any]) -> ValidBatch:
        """Validate a list of records (a batch request), or raise RecordInvalid naming
        every bad field as `[i].field`.

        A batch whose every value is already what the schema wants is checked column by
        column with numpy (~1 us a row against ~5 us record by record); anything else,
        including every invalid batch, goes record by record, so the answer (canonical
        values, or the problems) is the one `validate_record` gives.
        """
        columns = self._columns_if_valid(items) if len(items) >= COLUMNWISE_MIN_ROWS else None
        if columns is not None:
            return ValidBatch(items, columns)
        records: list[dict[str, Any]] = []
        problems: list[FieldProblem] = []
        for i, item in enumerate(items):
            try:
                records.append(self.validate_record(item, where=f"[{i}]."))
            except RecordInvalid as exc:
                problems.extend(exc.problems)
        if problems:
            raise RecordInvalid(problems)
        return ValidBatch(records)

    def _columns_if_valid(self, items: list[Any]) -> dict[str, Any] | None:
        """The batch's columns when every record is an object with exactly the schema's
        fields and every value is valid and already canonical; otherwise None."""
        names = self._by_name.keys()
        for item in items:
            if type(item) is not dict or item.keys() != names:
                return None
        columns: dict[str, Any] = {}
        for feat in self.features:
            name = feat.name
            column = _valid_column(feat, [item[name] for item in items])
            if column is None:
                return None
            columns[name] = column
        return columns

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "task": self.task,
            "target": {"name": self.target, **self.target_spec.to_dict()},
            "features": [f.to_dict() for f in self.features],
        }
        for key in USE_KEYS:
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Schema:
        try:
            target = raw["target"]["name"]
            features = tuple(Feature.from_dict(f) for f in raw["features"])
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"schema needs `target.name` and a `features` list ({exc})") from exc
        if not features:
            raise SchemaError("schema has no features")
        taken = [f.name for f in features if f.name in RESERVED_NAMES]
        if taken:
            raise SchemaError(f"features: {taken[0]!r} is a column the prediction log and the "
                              f"drift reports keep beside the features (reserved: "
                              f"{', '.join(RESERVED_NAMES)}); rename the feature")
        if not isinstance(raw["target"], Mapping):
            raise SchemaError("target: must be a mapping with a `name`")
        return cls(
            name=str(raw.get("name", "dataset")),
            target=str(target),
            features=features,
            description=str(raw.get("description", "")),
            target_spec=TargetSpec.from_dict(raw.get("task", "binary"), raw["target"]),
            **{key: _statements(key, raw.get(key)) for key in USE_KEYS},
        )

    @classmethod
    def load(cls, path: str | Path = DEFAULT_SCHEMA_PATH) -> Schema:
        """The schema file at `path`; SchemaError names the file and the field."""
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        if not isinstance(raw, Mapping):
            raise SchemaError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(raw)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None


def _statements(key: str, raw: Any) -> tuple[str, ...]:
    """An optional top-level `key` (intended_use, limitations): a string or a list of
    strings, each non-blank; SchemaError names the key (and the item) otherwise."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise SchemaError(f"{key}: must be a string or a list of strings, got "
                          f"{_json_type(raw)} {raw!r}")
    out = []
    for i, item in enumerate(items):
        where = key if isinstance(raw, str) else f"{key}[{i}]"
        if not isinstance(item, str):
            raise SchemaError(f"{where}: must be a string, got {_json_type(item)} {item!r}")
        if not item.strip():
            raise SchemaError(f"{where}: must not be blank")
        out.append(" ".join(item.split()))
    return tuple(out)


# Below this many records a batch is cheaper to check record by record (numpy's per-call
# cost is ~1-3 us a column).
COLUMNWISE_MIN_ROWS = 16
_NONE = type(None)


def _valid_column(feat: Feature, values: list[Any]) -> Any:
    """`values` as a column if each is valid for `feat` and already in its canonical
    type (float for a float feature, int for integer and ordinal ones); otherwise None.

    Anything unusual (an int where a float is wanted, a bool, a huge integer) returns
    None and the caller checks record by record, which canonicalises or names it.
    """
    kinds = set(map(type, values))
    if _NONE in kinds:
        if not feat.nullable:
            return None
        kinds.discard(_NONE)
    if feat.kind == "categorical":
        if kinds - {str}:
            return None
        allowed = set(feat.values)
        if feat.nullable:
            allowed.add(None)
        return values if set(values) <= allowed else None
    canonical = float if feat.kind == "float" else int
    if kinds - {canonical}:
        return None
    try:
        column = np.array(values, dtype=np.float64)  # None becomes NaN
    except (OverflowError, TypeError, ValueError):
        return None
    missing = np.isnan(column)
    if int(missing.sum()) != values.count(None):
        return None  # a float NaN is not a null (JSON cannot carry one, Python callers can)
    present = column[~missing]
    if present.size:
        if not np.isfinite(present).all() or np.abs(present).max() > MODEL_FLOAT_MAX:
            return None  # the record path names the value
        if feat.kind == "ordinal":
            low, high = 0, len(feat.levels) - 1
        else:
            low, high = feat.min, feat.max
        if (low is not None and present.min() < low) or (high is not None
                                                          and present.max() > high):
            return None
    if canonical is int and present.size and np.abs(present).max() >= 2.0**53:
        return None  # float64 cannot hold every such int exactly: let the record path decide
    return column


# Columns the prediction log's rows (core.store) and the reference sample (core.registry)
# keep beside the features: a feature of the same name would be overwritten by them.
RESERVED_NAMES = ("prediction_id", "created_at", "model_name", "model_version", "probability",
                  "decision", "value", "interval_low", "interval_high", "actual",
                  "feedback_at", "feedback_by", "feedback_trusted", "prediction")

# The largest magnitude a feature may have: XGBoost's float32.
MODEL_FLOAT_MAX = float(np.finfo(np.float32).max)


def _fits_a_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def model_frame(schema: Schema, data: Any) -> pd.DataFrame:
    """A DataFrame of the schema's features in model-ready dtypes.

    Numbers (and ordinal codes) become float64 with NaN for null, which XGBoost
    treats as missing; categories stay strings.  `data` is a DataFrame or a list
    of records.
    """
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame.from_records(data)
    out = pd.DataFrame(index=frame.index)
    for feat in schema.features:
        column = frame[feat.name]
        if feat.is_categorical:
            out[feat.name] = column.astype(object)
        else:
            out[feat.name] = pd.to_numeric(column, errors="raise").astype("float64")
    return out


def typical_record(schema: Schema, frame: pd.DataFrame) -> dict[str, Any]:
    """A record of typical values from `frame` (a sample of the training data): each
    number's median (rounded for integers and ordinal codes), each category's most
    frequent value.  Valid for the schema whenever the frame's values are."""
    record: dict[str, Any] = {}
    for feat in schema.features:
        column = frame[feat.name].dropna()
        if column.empty:
            record[feat.name] = None if feat.nullable else _lowest_valid(feat)
        elif feat.is_categorical:
            record[feat.name] = str(column.astype(str).mode().iloc[0])
        else:
            median = float(pd.to_numeric(column).median())
            # Two decimals: a form's default, not 1101.8649999999998.
            record[feat.name] = round(median, 2) if feat.kind == "float" else int(round(median))
    return record


def _lowest_valid(feat: Feature) -> Any:
    if feat.is_categorical:
        return feat.values[0]
    if feat.kind == "ordinal":
        return 0
    low = feat.min if feat.min is not None else 0.0
    return low if feat.kind == "float" else int(math.ceil(low))
