"""Predictions for a CSV file: `POST /predict` with `Content-Type: text/csv`.

A person with a spreadsheet sends its rows and gets the same file back with the answer's
columns after its own (core.task): prediction_id, <target>_probability and
<target>_predicted (0/1 at the threshold) for a binary model, prediction_id and
<target>_predicted for a number -- never the target's own name, under which a labelled
export carries the real outcome. Those names, and `contribution_<feature>`, cannot be
columns of the file.
The header names the columns; every feature of the schema must be one of them. Other
columns (a customer id, a note) are not sent to the model and come back as they were, so
the answer joins back to the person's own records. Cells are text: numbers are parsed,
an empty cell is null (refused where the feature is not nullable), an ordinal feature
takes its level's name or its code. Problems name the file's line (the header is line 1,
as a spreadsheet numbers its rows) and the column, then the problem as the JSON API
words it; a file with any bad row is refused whole, like a JSON batch, so the answer
never holds a silent gap.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from core.schema import Feature, FieldProblem, RecordInvalid, Schema
from core.task import Task, task_of

CONTRIBUTION_PREFIX = "contribution_"
MAX_COLUMNS = 1_000
# A number as JSON writes one (ASCII digits, no "1_000", no "nan"): what the API takes.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


class CsvProblem(ValueError):
    """The file as a whole cannot be read (not text, no header, a missing column...)."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def read_rows(raw: bytes, schema: Schema,
              max_rows: int) -> tuple[list[str], list[dict[str, str]], list[dict[str, Any]]]:
    """The file's header, its rows as text, and its rows as validated records.

    Raises CsvProblem for a file that cannot be read as a table of the schema's columns,
    RecordInvalid naming every bad cell, or OverflowError past `max_rows` rows."""
    try:
        text = raw.decode("utf-8-sig")  # a spreadsheet's export may start with a BOM
    except UnicodeDecodeError as exc:
        raise CsvProblem([FieldProblem("body", f"is not UTF-8 text ({exc.reason} at "
                                               f"byte {exc.start})")]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    rows: list[dict[str, str]] = []
    lines: list[int] = []  # the line each row starts on (a quoted cell may span lines)
    try:
        previous_end = 0
        for cells in reader:
            starts, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, or a spreadsheet's empty row (",,,,")
            if not header:
                header = [name.strip() for name in cells]
                if len(header) > MAX_COLUMNS:
                    raise CsvProblem([FieldProblem("line 1", f"names {len(header)} columns; "
                                                             f"at most {MAX_COLUMNS}")])
                continue
            if len(cells) != len(header):
                raise CsvProblem([FieldProblem(f"line {starts}",
                                               f"has {len(cells)} cells; the header names "
                                               f"{len(header)}")])
            if len(rows) == max_rows:
                raise OverflowError(f"file has more than {max_rows} rows, the limit of a "
                                    "batch; split it")
            rows.append(dict(zip(header, cells, strict=True)))
            lines.append(starts)
    except csv.Error as exc:
        raise CsvProblem([FieldProblem(f"line {reader.line_num}",
                                       f"is not valid CSV ({exc})")]) from None
    if not header:
        raise CsvProblem([FieldProblem("body", "is empty; send a header line and rows")])
    missing = [name for name in schema.feature_names if name not in header]
    if missing:
        raise CsvProblem([FieldProblem(name, "is a required column; the header has: "
                                             f"{', '.join(header)}") for name in missing])
    repeated = sorted(name for name, times in Counter(header).items() if times > 1)
    if repeated:
        raise CsvProblem([FieldProblem(name, "is a column named twice") for name in repeated])
    reserved = {*task_of(schema).csv_answer_columns,
                *(f"{CONTRIBUTION_PREFIX}{name}" for name in schema.feature_names)}
    taken = [name for name in header if name in reserved]
    if taken:
        raise CsvProblem([FieldProblem(name, "is a column the answer writes; rename or remove "
                                             "it (an answered file sent again has it)")
                          for name in taken])
    if not rows:
        raise CsvProblem([FieldProblem("body", "has a header but no rows")])
    records: list[dict[str, Any]] = []
    problems: list[FieldProblem] = []
    for line, row in zip(lines, rows, strict=True):
        record: dict[str, Any] = {}
        for feat in schema.features:
            try:
                # The JSON API's own check, on the value the cell's text stands for.
                record[feat.name] = feat.check(_cell(feat, row[feat.name]))
            except ValueError as exc:
                problems.append(FieldProblem(f"line {line}.{feat.name}", str(exc)))
        records.append(record)
    if problems:
        raise RecordInvalid(problems)
    return header, rows, records


def write_answers(header: Sequence[str], rows: Sequence[dict[str, str]],
                  answers: Sequence[dict[str, Any]], feature_names: Sequence[str],
                  task: Task) -> str:
    """The file's rows as sent, with the answer's columns after them (and, when the
    answers carry explanations, one `contribution_<feature>` column per feature); the
    file cannot hold those names (read_rows refuses them), so nothing of it is replaced."""
    explained = bool(answers) and "explanation" in answers[0]
    extra = [f"{CONTRIBUTION_PREFIX}{name}" for name in feature_names] if explained else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*header, *task.csv_answer_columns, *extra])
    for row, answer in zip(rows, answers, strict=True):
        cells = [row[name] for name in header]
        cells += task.csv_cells(answer)
        if explained:
            contributions = answer["explanation"]["contributions"]
            cells += [f"{contributions[name]:.6f}" for name in feature_names]
        writer.writerow(cells)
    return out.getvalue()


def _cell(feat: Feature, text: str) -> Any:
    """A cell's text as the value the JSON API would take (then checked by the schema)."""
    value = text.strip()
    if value == "":
        return None
    if feat.is_categorical:
        return value
    if feat.kind == "ordinal" and value in feat.levels:
        return feat.levels.index(value)
    if not _NUMBER.fullmatch(value):
        expected = ("an ordinal code or one of " + ", ".join(feat.levels)
                    if feat.kind == "ordinal" else "a number")
        raise ValueError(f"must be {expected}, got {value!r}")
    try:
        return int(value)
    except ValueError:
        return float(value)  # "1e400" is inf: the schema's check names it
