"""Scoring without the per-call overhead of pandas and sklearn.

The fitted pipeline is `ColumnTransformer(numeric passthrough, OneHotEncoder)`
followed by an `XGBClassifier` or an `XGBRegressor` (core.task decides which).  On a
one-row DataFrame the ColumnTransformer costs ~3 ms a call; here its fitted state
(column order, one-hot categories) is read once, each validated record becomes a row of
a numpy matrix directly, and the booster's `inplace_predict` scores it.  The result is
what the pipeline's `predict_proba(...)[:, 1]` (or a regressor's `predict`) gives -- a
test holds them equal to 1e-6 -- at a small fraction of the cost.

For a request of a few records even `inplace_predict` is mostly fixed cost
(~180 us a call, whatever the row count): those rows walk the trees in Python
instead (`TreeWalker`, read from the booster's own JSON model), comparing in
float32 as XGBoost does.  Batches still go to XGBoost.

Pipelines of another shape are not guessed at: `FastScorer.from_pipeline`
returns None and the predictor uses the pipeline itself.

`explain` gives each feature's contribution to the score: XGBoost's own TreeSHAP
(`pred_contribs`) on the same matrix, in the model's margin (log-odds for a classifier,
the target's own unit for a regressor), one-hot columns summed back to the feature they
encode, so the contributions and the base value add up to the score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from xgboost import XGBClassifier, XGBRegressor

from core import contributions
from core.calibration import Calibration
from core.schema import Schema


@dataclass(frozen=True)
class FastScorer:
    numeric: tuple[tuple[str, int], ...]                 # (feature, matrix column)
    categorical: tuple[tuple[str, dict[str, int]], ...]  # (feature, value -> matrix column)
    width: int
    booster: Any
    walker: TreeWalker | None = None

    @classmethod
    def from_pipeline(cls, pipeline: Any, schema: Schema) -> FastScorer | None:
        """A scorer equivalent to `pipeline.predict_proba(...)[:, 1]` (a classifier) or
        `pipeline.predict(...)` (a regressor), or None if the pipeline is not the shape
        this module knows."""
        if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
            return None
        transformer, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
        if not isinstance(transformer, ColumnTransformer) or not isinstance(
            estimator, XGBClassifier | XGBRegressor
        ):
            return None
        if isinstance(estimator, XGBClassifier) and estimator.n_classes_ != 2:
            return None
        if not _missing_is_nan(estimator):
            return None
        numeric: list[tuple[str, int]] = []
        categorical: list[tuple[str, dict[str, int]]] = []
        position = 0
        for _name, step, columns in transformer.transformers_:
            if step == "drop" or len(columns) == 0:
                continue
            if _is_passthrough(step):
                for column in columns:
                    if schema.feature(column).is_categorical:
                        return None
                    numeric.append((column, position))
                    position += 1
            elif isinstance(step, OneHotEncoder):
                if step.handle_unknown != "ignore" or step.drop_idx_ is not None:
                    return None
                for column, values in zip(columns, step.categories_, strict=True):
                    categorical.append(
                        (column, {str(v): position + i for i, v in enumerate(values)}))
                    position += len(values)
            else:
                return None
        if position != _output_width(transformer):
            return None
        booster = estimator.get_booster().copy()
        # One thread per call: gunicorn's workers and threads are the parallelism, and
        # XGBoost's OpenMP threads on a one-row matrix cost more to wake than they save
        # (measured ~10% of a request's CPU on 2 cores).
        booster.set_param({"nthread": 1})
        return cls(tuple(numeric), tuple(categorical), position, booster,
                   TreeWalker.from_booster(booster, position))

    def matrix(self, records: Sequence[dict[str, Any]]) -> np.ndarray:
        """Validated records as the model's input matrix (NaN is missing, as in training)."""
        out = np.zeros((len(records), self.width), dtype=np.float64)
        for row, record in zip(out, records, strict=True):
            for name, column in self.numeric:
                value = record[name]
                row[column] = np.nan if value is None else value
            for name, columns in self.categorical:
                column = columns.get(record[name])
                if column is not None:  # an unseen category encodes as all zeros
                    row[column] = 1.0
        return out

    def matrix_from_columns(self, columns: dict[str, Any], rows: int) -> np.ndarray:
        """The same matrix from a batch validated column by column (core.schema.ValidBatch)."""
        out = np.zeros((rows, self.width), dtype=np.float64)
        for name, column in self.numeric:
            out[:, column] = columns[name]
        row_numbers = np.arange(rows)
        for name, mapping in self.categorical:
            positions = np.fromiter((mapping.get(v, -1) for v in columns[name]),
                                    dtype=np.intp, count=rows)
            known = positions >= 0  # an unseen category encodes as all zeros
            out[row_numbers[known], positions[known]] = 1.0
        return out

    def predict(self, records: Sequence[dict[str, Any]],
                columns: dict[str, Any] | None = None) -> np.ndarray:
        """The model's output for each record: a classifier's probability of the positive
        class, a regressor's number (`columns`: the same records column by column, when
        the validator made them)."""
        if columns is not None:
            matrix = self.matrix_from_columns(columns, len(records))
        else:
            matrix = self.matrix(records)
        if self.walker is not None and len(records) <= TreeWalker.MAX_ROWS:
            return self.walker.predict(matrix)
        return self.booster.inplace_predict(matrix, missing=np.nan)


    def explain(self, records: Sequence[dict[str, Any]],
                columns: dict[str, Any] | None = None) -> Explanations:
        """Each record's score (log-odds) split into a base value and one contribution
        per feature (TreeSHAP, exact for trees): base + sum(contributions) = score."""
        matrix = (self.matrix_from_columns(columns, len(records)) if columns is not None
                  else self.matrix(records))
        base, per_feature = contributions.by_feature(self.booster, matrix, self._column_owners,
                                                     self.feature_names)
        return Explanations(self.feature_names, base, per_feature)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.numeric) + tuple(
            name for name, _ in self.categorical)

    @property
    def _column_owners(self) -> list[str]:
        """The feature each matrix column encodes."""
        owners = [""] * self.width
        for name, column in self.numeric:
            owners[column] = name
        for name, mapping in self.categorical:
            for column in mapping.values():
                owners[column] = name
        return owners


@dataclass(frozen=True)
class Explanations:
    """Scores split by feature, for a batch: `base[i] + contributions[i].sum()` is row
    i's score: in log-odds for a classifier (the probability is its logistic), the
    prediction itself for a regressor."""

    feature_names: tuple[str, ...]
    base: np.ndarray           # (rows,)
    contributions: np.ndarray  # (rows, features), in feature_names order

    def calibrated(self, calibration: Calibration) -> Explanations:
        """The same split of the calibrated score: Platt scaling is linear in log-odds, so
        each contribution scales by its slope and the intercept joins the base."""
        if calibration.is_identity:
            return self
        return Explanations(self.feature_names, calibration.apply_log_odds(self.base),
                            self.contributions * calibration.slope)

    def as_dicts(self, order: Sequence[str], unit: str) -> list[dict[str, Any]]:
        """One JSON-ready explanation per row, features in `order` (the schema's), in
        `unit` (the task's: log-odds, or the target's unit)."""
        position = {name: i for i, name in enumerate(self.feature_names)}
        columns = [position[name] for name in order]
        scores = self.base + self.contributions.sum(axis=1)
        return [{"unit": unit, "base": float(base), "score": float(score),
                 "contributions": dict(zip(order, row[columns].tolist(), strict=True))}
                for base, score, row in zip(self.base.tolist(), scores.tolist(),
                                            self.contributions, strict=True)]


# A tree node: (feature column, threshold, left, right, missing goes left) or a leaf value.
Node = tuple[int, float, "Node", "Node", bool] | float


# The objectives the walker scores, by their link from the margin to the output: the
# logistic for a probability, none for a number.
LOGISTIC, IDENTITY = "logistic", "identity"
LINKS = {"binary:logistic": LOGISTIC, "reg:squarederror": IDENTITY,
         "reg:absoluteerror": IDENTITY}


@dataclass(frozen=True)
class TreeWalker:
    """A gbtree of one of LINKS' objectives scored in plain Python, a few rows at a time.

    The trees are also compiled into one Python function of nested conditional
    expressions (`margin`): ~7 us a row for 200 trees of depth 2, against ~27 us
    walking the node tuples.  Models too big to compile quickly are walked.
    """

    MAX_ROWS = 4  # above this, XGBoost's vectorised call is cheaper
    MAX_COMPILED_NODES = 50_000  # ~1 MB of source: compiles in well under a second
    MAX_COMPILED_DEPTH = 100
    trees: tuple[Node, ...]
    base_margin: float
    margin: Callable[[list[float]], float] | None = field(default=None, compare=False)
    link: str = LOGISTIC

    @classmethod
    def from_booster(cls, booster: Any, width: int) -> TreeWalker | None:
        """The booster's trees, or None for anything but numeric splits of one target."""
        model = json.loads(booster.save_raw("json"))["learner"]
        params = model["learner_model_param"]
        link = LINKS.get(model["objective"]["name"])
        if (link is None
                or model["gradient_booster"]["name"] != "gbtree"
                or params.get("num_target", "1") != "1" or int(params["num_feature"]) != width):
            return None
        trees = model["gradient_booster"]["model"]["trees"]
        if any(any(tree["split_type"]) or tree["tree_param"]["size_leaf_vector"] not in ("0", "1")
               for tree in trees):
            return None
        base_score = float(params["base_score"].strip("[]"))
        if link == LOGISTIC and not 0.0 < base_score < 1.0:
            return None
        nodes = tuple(_compile(tree, 0) for tree in trees)
        base_margin = (math.log(base_score / (1.0 - base_score)) if link == LOGISTIC
                       else base_score)
        return cls(nodes, base_margin, _compiled_margin(nodes, base_margin), link)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The model's output: the probability (logistic link) or the number."""
        # XGBoost compares float32 feature values with float32 thresholds: rounding both
        # to float32 (held exactly in Python floats) takes the same branch every time.
        rows = matrix.astype(np.float32).astype(np.float64).tolist()
        if self.margin is None:
            return self.walk(rows)
        margin = self.margin
        if self.link == IDENTITY:
            return np.array([margin(row) for row in rows])
        return np.array([1.0 / (1.0 + math.exp(-margin(row))) for row in rows])

    def walk(self, rows: list[list[float]]) -> np.ndarray:
        """predict by walking the node tuples (float32-rounded rows)."""
        out = np.empty(len(rows))
        for i, row in enumerate(rows):
            margin = self.base_margin
            for node in self.trees:
                while type(node) is tuple:
                    column, threshold, left, right, missing_left = node
                    value = row[column]
                    if value != value:  # NaN: the tree's default direction
                        node = left if missing_left else right
                    else:
                        node = left if value < threshold else right
                margin += node
            out[i] = margin if self.link == IDENTITY else 1.0 / (1.0 + math.exp(-margin))
        return out


def _compile(tree: dict[str, Any], node: int) -> Node:
    left = tree["left_children"][node]
    if left == -1:
        # A leaf's value is its split condition's slot: `base_weights` holds the weight
        # before an adaptive objective (reg:absoluteerror) refreshed the leaf.
        return float(tree["split_conditions"][node])
    threshold = float(np.float32(tree["split_conditions"][node]))
    return (int(tree["split_indices"][node]), threshold, _compile(tree, left),
            _compile(tree, tree["right_children"][node]), bool(tree["default_left"][node]))


def _size(node: Node) -> int:
    return 1 + _size(node[2]) + _size(node[3]) if type(node) is tuple else 1


def _expression(node: Node) -> str:
    """A tree as a conditional expression over the row `r`.

    NaN compares false both ways, so the test is written so that false is the
    missing-value direction: `x < t` when missing goes right, `x >= t` (with the
    branches swapped) when it goes left.  Numbers are written with repr, which
    reads back to the same float.
    """
    if type(node) is not tuple:
        return repr(node)
    column, threshold, left, right, missing_left = node
    if missing_left:
        return f"({_expression(right)} if r[{column}] >= {threshold!r} else {_expression(left)})"
    return f"({_expression(left)} if r[{column}] < {threshold!r} else {_expression(right)})"


def _depth(node: Node) -> int:
    return 1 + max(_depth(node[2]), _depth(node[3])) if type(node) is tuple else 0


def _compiled_margin(trees: tuple[Node, ...],
                     base_margin: float) -> Callable[[list[float]], float] | None:
    """The trees as one compiled function, or None (then they are walked): too many
    nodes to compile quickly, or too deep for the parser (it refuses ~200 nested
    parentheses; lossguide or unbounded-depth models get there)."""
    if (sum(map(_size, trees)) > TreeWalker.MAX_COMPILED_NODES
            or max(map(_depth, trees), default=0) > TreeWalker.MAX_COMPILED_DEPTH):
        return None
    source = f"def margin(r):\n    m = {base_margin!r}\n"
    source += "".join(f"    m += {_expression(tree)}\n" for tree in trees)
    source += "    return m\n"
    namespace: dict[str, Any] = {}
    try:
        # The source holds only numbers this module wrote from the booster's JSON.
        exec(compile(source, "<onebox trees>", "exec"), namespace)  # noqa: S102
    except (SyntaxError, RecursionError, MemoryError):
        return None
    return namespace["margin"]


def _is_passthrough(step: Any) -> bool:
    # A fitted ColumnTransformer holds "passthrough" as an identity FunctionTransformer.
    if isinstance(step, str):
        return step == "passthrough"
    return isinstance(step, FunctionTransformer) and step.func is None


def _missing_is_nan(estimator: XGBClassifier | XGBRegressor) -> bool:
    missing = estimator.get_params().get("missing", np.nan)
    return missing is None or (isinstance(missing, float) and np.isnan(missing))


def _output_width(transformer: ColumnTransformer) -> int:
    return len(transformer.get_feature_names_out())
