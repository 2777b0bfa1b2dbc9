"""Our summary on top of Evidently's drift and quality pages.

Evidently's page alone says neither which window, model or phase it is about, nor how to
get back; it lists its columns by p-value from high to low (the drifted ones last, on its
table's second page), shows the dataset threshold as a raw share (0.058823529411764705)
and counts more columns than the model has features without saying why.  Each page
write_report saves gets, right after its <body> tag, the project's header and a section of
ours: the window (its time span and rows), the model and version, the phase, the verdict,
the p-value threshold rounded, every tested column with the drifted ones first, what the
rows beyond the features are, and a link back to the index.  Evidently's page follows,
untouched (its script draws into its own element below ours).

Everything shown is read from the window's JSON summary (the figures the index and the
alarm use): the page cannot disagree with them.
"""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime
from typing import Any

from core.page_header import HEADER_CSS, header_html
from monitoring.drift import CATEGORICAL_TEST, JOINT_COLUMN, JOINT_TEST, NUMERIC_TEST

INDEX_HREF = "index.html"  # the index is written beside every report
REPORTS_PATH = "/reports/"  # the header's current page: the reports

METHODS = {
    NUMERIC_TEST: "Mann-Whitney or K-S",
    CATEGORICAL_TEST: "chi-square, rare categories pooled",
    JOINT_TEST: "classifier two-sample test",
}

SUMMARY_CSS = HEADER_CSS + """
.onebox-drift{box-sizing:border-box;max-width:1150px;margin:0;padding:1rem 24px 0;
  font:15px/1.45 system-ui,sans-serif;color:#1f2328;background:#fff}
.onebox-drift *{box-sizing:border-box}
.onebox-drift h1{font-size:1.5rem;margin:.25rem 0 .5rem;overflow-wrap:anywhere}
.onebox-drift h2{font-size:1.15rem;margin:1.25rem 0 .4rem}
.onebox-drift p{margin:.4rem 0}
.onebox-drift a{color:#0969da}
.onebox-drift .back{margin:0 0 .5rem}
.onebox-drift .verdict{font-weight:600}
.onebox-drift .verdict.drifted,.onebox-drift tr.drifted td{color:#b00020}
.onebox-drift tr.drifted td{font-weight:600}
.onebox-drift dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);
  gap:.2rem 1rem;margin:.5rem 0}
.onebox-drift dl.facts dt{font-weight:600}
.onebox-drift dl.facts dd{margin:0;overflow-wrap:anywhere}
.onebox-drift table{border-collapse:collapse;width:100%;font-size:14px}
.onebox-drift th,.onebox-drift td{padding:.25rem .6rem;border-bottom:1px solid #ddd;
  text-align:left;vertical-align:top;overflow-wrap:anywhere}
.onebox-drift td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
.onebox-drift .hint{color:#555;font-size:14px}
.onebox-drift .evidently{margin:1rem 0 0;padding:.5rem 0 0;border-top:2px solid #d0d7de;
  color:#555;font-size:14px}
"""


def p_text(p: float) -> str:
    """A p-value as a person reads it: three decimals, or two significant digits below
    0.001 (0.00059, 3.2e-10)."""
    if p <= 0:
        return "< 1e-300"  # below what a float holds
    return f"{p:.3f}" if p >= 0.001 else f"{p:.2g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def window_text(summary: dict[str, Any]) -> str:
    """The window's span in UTC and its rows: "2026-05-01 08:01:00 to 08:03:00 UTC (2 min),
    1,000 logged predictions"."""
    start, end = _when(summary.get("window_start")), _when(summary.get("window_end"))
    rows = _number(summary.get("current_rows"))
    counted = "" if rows is None else f"{rows:,.0f} logged predictions"
    if start is None or end is None:
        written = _when(summary.get("created_at"))
        span = ("times not logged" if written is None else
                f"times not logged; reported {written:%Y-%m-%d %H:%M:%S} UTC")
        return f"{counted} ({span})" if counted else span
    end_text = f"{end:%H:%M:%S}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M:%S}"
    span = (f"{start:%Y-%m-%d %H:%M:%S} to {end_text} UTC "
            f"({_duration((end - start).total_seconds())})")
    return f"{span}, {counted}" if counted else span


def tested_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tested column of the window: name, what it is, test, p-value, drifted, and
    whether the decision counts it; drifted first, then by p-value, lowest first."""
    rows: list[dict[str, Any]] = []

    def add(name: str, kind: str, entry: Any, counted: bool = True) -> None:
        if not isinstance(entry, dict) or _number(entry.get("score")) is None:
            return
        rows.append({"column": name, "kind": kind, "p": float(entry["score"]),
                     "method": METHODS.get(str(entry.get("method")), str(entry.get("method"))),
                     "drifted": bool(entry.get("drifted")), "counted": counted})

    for name, entry in (summary.get("features") or {}).items():
        add(str(name), "feature", entry)
    for name, entry in (summary.get("conditional") or {}).items():
        add(f"{name} | others", "relation: what the other features leave unexplained",
            entry)
    add(JOINT_COLUMN, "relation: all the features together", summary.get("joint_drift"))
    alarm = summary.get("prediction_drift_alarm")
    add("prediction", "the model's prediction", summary.get("prediction_drift"),
        counted=alarm is not False)
    rows.sort(key=lambda r: (not r["drifted"], r["p"], r["column"]))
    return rows


def threshold_of(summary: dict[str, Any]) -> float | None:
    """The p-value under which a column drifted (one for all the window's columns)."""
    for entry in [*(summary.get("features") or {}).values(), summary.get("prediction_drift")]:
        if isinstance(entry, dict) and (value := _number(entry.get("threshold"))) is not None:
            return value
    return None


def _verdict(summary: dict[str, Any]) -> tuple[str, bool]:
    features = list(summary.get("drifted_features") or [])
    relations = list(summary.get("drifted_relations") or [])
    prediction = summary.get("prediction_drift")
    predicted = isinstance(prediction, dict) and bool(prediction.get("drifted"))
    moved = [*features, *relations, *(["the prediction"] if predicted else [])]
    if summary.get("drift_detected"):
        return f"Data drift detected: {', '.join(moved)}.", True
    if moved:
        return (f"No data drift alarm: {', '.join(moved)} moved, which the decision does "
                "not count alone.", False)
    return "No data drift: no column's test failed.", False


def summary_section(summary: dict[str, Any], *, card_href: str | None = None) -> str:
    """Our section of a drift report: header, back link, title, the window, the model,
    the verdict, the threshold, the tested columns drifted first, and what they are."""
    e = html.escape
    title = str(summary.get("title") or "Drift report")
    model = f"{summary.get('model_name', 'n/a')} v{summary.get('model_version', '?')}"
    model_cell = (f'<a href="{e(card_href)}">{e(model)}</a> (its model card)' if card_href
                  else e(model))
    rows = tested_rows(summary)
    threshold = threshold_of(summary)
    counted = [r for r in rows if r["counted"]]
    rate = _number(summary.get("false_alarm_rate"))
    verdict, drifted = _verdict(summary)
    facts = [("Window", e(window_text(summary))),
             ("Model", model_cell),
             ("Phase", e(title))]
    reference_rows = _number(summary.get("reference_rows"))
    if reference_rows is not None:
        facts.append(("Compared with", f"the champion's reference sample, "
                                       f"{reference_rows:,.0f} rows"))
    if threshold is not None:
        budget = ("" if rate is None else
                  f" ({rate:.2g}, the false-alarm budget, split over the {len(counted)} "
                  "columns the decision counts: a window of clean traffic raises the alarm "
                  f"with probability at most {rate:.2g})")
        facts.append(("Threshold", f"<strong>p &lt; {e(p_text(threshold))}</strong>: a "
                                   f"column drifted when its test's p-value is below it"
                                   f"{e(budget)}"))
    fact_html = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    drifted_row = ' class="drifted"'
    body = "".join(
        f'<tr{drifted_row if r["drifted"] else ""}><td>{e(r["column"])}</td>'
        f'<td>{e(r["kind"])}{"" if r["counted"] else " (shown, not counted)"}</td>'
        f'<td>{e(r["method"])}</td><td class="num">{e(p_text(r["p"]))}</td>'
        f'<td>{"drifted" if r["drifted"] else "no"}</td></tr>' for r in rows)
    below = "" if threshold is None else f" (p &lt; {e(p_text(threshold))})"
    table = (f'<table class="onebox-tests"><thead><tr><th>column</th><th>what it is</th>'
             f'<th>test</th><th>p-value</th><th>drifted{below}</th></tr></thead>'
             f"<tbody>{body}</tbody></table>" if rows else "<p>No column was tested.</p>")
    return (f'<div class="onebox-drift" id="onebox-summary">{header_html(REPORTS_PATH)}'
            f'<p class="back"><a href="{INDEX_HREF}">← All reports (the index)</a></p>'
            f"<h1>Drift report: {e(title)}</h1>"
            f'<p class="verdict{" drifted" if drifted else ""}">{e(verdict)}</p>'
            f'<dl class="facts">{fact_html}</dl>'
            f"<h2>Columns tested, drifted first</h2>{table}"
            f'<p class="hint">{e(_rows_explained(summary, rows))}</p>'
            f'<p class="evidently">{e(_evidently_explained(summary, rows))}</p></div>')


def _rows_explained(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Why there are more rows than features."""
    features = sum(r["kind"] == "feature" for r in rows)
    conditional = sum(r["column"].endswith(" | others") for r in rows)
    joint = any(r["column"] == JOINT_COLUMN for r in rows)
    prediction = next((r for r in rows if r["column"] == "prediction"), None)
    parts = [f"{features} features (each one's own distribution)"]
    if conditional:
        parts.append(f"{conditional} relations \u201cfeature | others\u201d (the part of a "
                     "numeric feature the other features do not explain, tested where they "
                     "explain it well: a change in how features go together)")
    if joint:
        parts.append("the joint test \u201cfeatures jointly\u201d (a small classifier trained "
                     "to tell the window from the reference: its held-out AUC, "
                     "tested against chance)")
    if prediction is not None:
        parts.append("the prediction (its distribution)" + (
            "" if prediction["counted"] else ", shown but not counted by the decision"))
    share = _number(summary.get("drift_share_threshold"))
    needed = "" if share is None or not features else (
        f" The alarm rises when at least {max(1, math.ceil(share * features - 1e-9))} "
        "feature or relation drifted" + (
            ", or the prediction did" if prediction is not None and prediction["counted"]
            else "") + ".")
    return (f"{len(rows)} columns where the index counts {features} features: "
            + "; ".join(parts) + ". The drift share on the index counts the features alone."
            + needed)


def _evidently_explained(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    counted = sum(r["counted"] for r in rows)
    features = sum(r["kind"] == "feature" for r in rows)
    share = _number(summary.get("drift_share_threshold"))
    needed = 1 if share is None else max(1, math.ceil(share * features - 1e-9))
    return ("Below: Evidently's detail of these same tests and p-values. Its \u201cDrift "
            "Score\u201d is the p-value rounded to 6 decimals (2 in its Tests tab), so a "
            "strong drift shows 0. Its drift table sorts the columns by p-value from high to "
            "low, an order it does not let us set: the drifted ones come last there, and "
            "first in its Tests tab. Its \u201cdataset drift detection threshold\u201d is a "
            f"share of the {counted} counted columns ({needed} of them), not a p-value: the "
            "same decision as above. Under \u201cfeature | others\u201d it draws the "
            "residuals, under \u201cfeatures jointly\u201d each held-out row's classifier "
            "score.")


def quality_section(summary: dict[str, Any], *, kind: str) -> str:
    """Our header for a window's quality page (Evidently's classification or regression
    report of the labelled predictions)."""
    e = html.escape
    title = str(summary.get("title") or "Quality report")
    quality = summary.get("quality") if isinstance(summary.get("quality"), dict) else {}
    labels = _number(quality.get("labels"))
    model = f"{summary.get('model_name', 'n/a')} v{summary.get('model_version', '?')}"
    facts = [("Window", e(window_text(summary))), ("Model", e(model)), ("Phase", e(title))]
    if labels is not None:
        facts.append(("Labels", f"{labels:,.0f} predictions whose real outcome has arrived: "
                                "the figures below are theirs"))
    fact_html = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    return (f'<div class="onebox-drift" id="onebox-summary">{header_html(REPORTS_PATH)}'
            f'<p class="back"><a href="{INDEX_HREF}">← All reports (the index)</a></p>'
            f"<h1>{e(kind.capitalize())} report: {e(title)}</h1>"
            f'<dl class="facts">{fact_html}</dl>'
            '<p class="evidently">Below: Evidently\'s report of the labelled predictions '
            "against their real outcomes.</p></div>")


_BODY = re.compile(r"<body\b[^>]*>", re.I)
_HEAD = re.compile(r"<head\b[^>]*>", re.I)


def with_summary(page: str, section: str, title: str) -> str:
    """Evidently's saved page with our style and <title> first in its <head>, and our
    `section` first in its <body> (at the very top when it has no such tags)."""
    head = f"<title>{html.escape(title)}</title><style>{SUMMARY_CSS}</style>"
    match = _HEAD.search(page)
    page = (page[:match.end()] + head + page[match.end():]) if match else head + page
    match = _BODY.search(page)
    if match is None:
        return section + page
    return page[:match.end()] + section + page[match.end():]
