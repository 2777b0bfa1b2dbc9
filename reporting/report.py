"""Drift reports: an Evidently HTML report per window of logged predictions against
the champion's reference sample, opened by a summary of ours (reporting.drift_page: the
window, the model, the drifted columns first, the way back), a quality report of the
same window's labelled predictions (where feedback has arrived), a JSON summary beside
them, and an index page: small charts of each figure over the windows (drift share,
live AUC, request volume, refusal rate), each on its own range with a line saying what
it draws, every window newest first with its headline numbers and a legend of the
columns, and the model versions with their cards (reporting.model_card).  Every page
opens with the project's header (core.page_header).

Request volume and refusal rate (the share of /predict requests answered 4xx) come from
Prometheus (PROMETHEUS_URL) when it answers; otherwise they are n/a and the volume is the
prediction log's rows per minute.  The index is rebuilt from the JSON summaries alone.

The reports folder is what nginx serves in the stack.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import requests

from core.page_header import HEADER_CSS, header_html
from core.registry import PREDICTION_COLUMN, LoadedModel
from core.settings import DEFAULT_ESTIMATED_AUC_MARGIN, Settings
from monitoring.drift import DriftPolicy
from monitoring.quality import live_quality
from monitoring.window import assess, read_champion_window
from reporting.atomic import atomic_write
from reporting.charts import trend_chart
from reporting.drift_page import p_text, quality_section, summary_section, with_summary
from reporting.model_card import CARDS_DIR, card_path

INDEX_FILE = "index.html"
SUMMARY_SUFFIX = ".json"
# Fewer labels than this make precision/recall/AUC noise, not a quality report.
MIN_QUALITY_LABELS = 30
# The predictor's request counter (server/metrics.py) and the endpoint the figures count.
REQUESTS_METRIC = "onebox_http_requests_total"
PREDICT_ENDPOINT = "/predict"
# Prometheus is asked two instant queries per report; slow or away, it costs this at most
# per request, never the report.
PROMETHEUS_TIMEOUT_SECONDS = 2.0
VOLUME_FROM_PROMETHEUS = "prometheus"
VOLUME_FROM_LOG = "prediction log"


class EmptyWindow(RuntimeError):
    """There are no logged predictions to report on."""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    summary: Path
    index: Path
    summary_data: dict[str, Any]
    quality_html: Path | None = None


def window_from_log(frame: pd.DataFrame, model: LoadedModel) -> pd.DataFrame:
    """The prediction log's rows as a drift window: features plus `prediction` (the
    model's task's logged prediction: the probability, or the number)."""
    return frame.rename(columns={model.task.logged_prediction: PREDICTION_COLUMN})


def write_report(
    window: pd.DataFrame,
    model: LoadedModel,
    reports_dir: Path,
    *,
    title: str = "Data drift",
    now: datetime | None = None,
    policy: DriftPolicy | None = None,
    prometheus_url: str | None = None,
    estimated_auc_margin: float = DEFAULT_ESTIMATED_AUC_MARGIN,
) -> ReportFiles:
    """Write the HTML report and its summary for one window, then rebuild the index.

    The figures are the exporter's (monitoring.window `assess`: drift, the alarm, the
    label-free quality estimate), with Evidently's HTML of the same tests.
    `policy`: the drift alarm's thresholds (default: the settings' defaults);
    `prometheus_url`: where the window's request volume and refusals are read (None: n/a).
    """
    if window.empty:
        raise EmptyWindow("no predictions in the window")
    now = now or datetime.now(UTC)
    policy = policy or DriftPolicy()
    logged = {PREDICTION_COLUMN: model.task.logged_prediction}
    assessment = assess(model, window.rename(columns=logged), policy, estimated_auc_margin,
                        report=True)
    drift = assessment.drift
    assert drift is not None  # the window is not empty
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"drift-{now:%Y%m%dT%H%M%S%fZ}"
    html_path = reports_dir / f"{stem}.html"
    summary_path = reports_dir / f"{stem}{SUMMARY_SUFFIX}"
    labelled = _labelled(window)
    quality = live_quality(labelled.rename(columns=logged), model.task)
    quality_path = None
    # Enough labels, and the task's own figure computable (an AUC needs both outcomes).
    if (quality.labels >= MIN_QUALITY_LABELS
            and model.task.gate_metric.name in quality.figures()):
        quality_path = reports_dir / f"quality-{stem.removeprefix('drift-')}.html"
    start, end = _window_span(window)
    summary = {
        "title": title,
        "report": html_path.name,
        "created_at": now.isoformat(),
        "model_name": model.name,
        "model_version": model.version,
        "window_start": None if start is None else start.isoformat(),
        "window_end": None if end is None else end.isoformat(),
        **drift.summary(),
        "quality": {**quality.as_dict(),
                    "estimated_auc": assessment.estimated.auc,
                    "estimated_rmse": assessment.estimated.rmse,
                    "report": None if quality_path is None else quality_path.name},
        "estimated": assessment.estimated.as_dict(),
        "reference_auc": assessment.reference_auc,
        "estimated_auc_floor": (None if assessment.reference_auc is None
                                else assessment.reference_auc - estimated_auc_margin),
        "estimated_quality_low": assessment.estimated_quality_low,
        "estimated_shortfall": assessment.estimated_shortfall,
        "quality_min_auc": policy.min_auc,
        # What a regression model's live error is held to: its holdout figures times this.
        "reference": assessment.reference,
        "quality_max_error_ratio": policy.max_error_ratio,
        # ... and the limits its live figures were held to in this window (the alarm's).
        "live_limits": assessment.live_limits,
        **request_figures(prometheus_url, start, end, len(window)),
    }
    # Evidently's pages, each opened by a section of ours (reporting.drift_page): which
    # window, model and phase, the drifted columns first, and the way back to the index.
    card = _card_href(reports_dir, model.name, model.version)
    _save_page(drift.snapshot, html_path, summary_section(summary, card_href=card),
               f"Drift report: {title} ({model.name} v{model.version})")
    if quality_path is not None:
        snapshot = QUALITY_PAGES[model.task.name](labelled, model)
        kind = "regression quality" if model.task.name == "regression" else (
            "classification quality")
        _save_page(snapshot, quality_path, quality_section(summary, kind=kind),
                   f"{kind.capitalize()}: {title} ({model.name} v{model.version})")
    # The summary last: the index lists a report only once its pages exist.
    atomic_write(summary_path, lambda p: p.write_text(json.dumps(summary, indent=2)))
    index_path = write_index(reports_dir, min_auc=policy.min_auc)
    return ReportFiles(html_path, summary_path, index_path, summary, quality_path)


def _save_page(snapshot: Any, path: Path, section: str, title: str) -> None:
    """Evidently's HTML of `snapshot` at `path`, our `section` first in its body."""
    def write(tmp: Path) -> None:
        snapshot.save_html(str(tmp))
        tmp.write_text(with_summary(tmp.read_text(encoding="utf-8"), section, title),
                       encoding="utf-8")

    atomic_write(path, write)


def _window_span(window: pd.DataFrame) -> tuple[datetime | None, datetime | None]:
    """The window's first and last logged time (UTC; naive times are UTC), if it has any."""
    if "created_at" not in window:
        return None, None
    created = pd.to_datetime(window["created_at"], utc=True, errors="coerce").dropna()
    if created.empty:
        return None, None
    return created.min().floor("us").to_pydatetime(), created.max().floor("us").to_pydatetime()


def _labelled(window: pd.DataFrame) -> pd.DataFrame:
    """The window's rows whose real outcome has arrived (none for unlabelled windows)."""
    needed = {"actual", PREDICTION_COLUMN}
    if not needed <= set(window.columns):
        return pd.DataFrame(columns=sorted(needed))
    return window[window["actual"].notna()]


def _classification_snapshot(labelled: pd.DataFrame, model: LoadedModel) -> Any:
    """Evidently's classification quality of the logged decisions against the outcomes.

    Given the probabilities, Evidently cuts them itself, at 0.5 unless told: its precision
    and recall were those of a 0.5 cut while the predictor decided at the served threshold
    (demo, drifted phase: 0.59 / 0.22 shown, 0.40 / 0.62 served).  The threshold is the
    served model's, the one its logged decisions were made at."""
    threshold = model.threshold
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    data = pd.DataFrame({
        "actual": labelled["actual"].astype(int).to_numpy(),
        "decision": labelled["decision"].astype(int).to_numpy(),
        PREDICTION_COLUMN: labelled[PREDICTION_COLUMN].astype(float).to_numpy(),
    })
    definition = DataDefinition(classification=[BinaryClassification(
        target="actual", prediction_labels="decision", prediction_probas=PREDICTION_COLUMN,
        pos_label=1)])
    return Report([ClassificationPreset(probas_threshold=threshold)]).run(
        current_data=Dataset.from_pandas(data, data_definition=definition))


def _regression_snapshot(labelled: pd.DataFrame, model: LoadedModel) -> Any:
    """Evidently's regression quality of the logged numbers against the outcomes (its
    RMSE, MAE, R², error distribution and error by value)."""
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import RegressionPreset

    data = pd.DataFrame({
        "actual": labelled["actual"].astype(float).to_numpy(),
        PREDICTION_COLUMN: labelled[PREDICTION_COLUMN].astype(float).to_numpy(),
    })
    definition = DataDefinition(regression=[Regression(target="actual",
                                                       prediction=PREDICTION_COLUMN)])
    return Report([RegressionPreset()]).run(
        current_data=Dataset.from_pandas(data, data_definition=definition))


# The quality page of each task (core.task decides the task; this maps it to Evidently's
# preset for it).
QUALITY_PAGES = {"binary": _classification_snapshot, "regression": _regression_snapshot}


def request_figures(prometheus_url: str | None, start: datetime | None,
                    end: datetime | None, rows: int) -> dict[str, Any]:
    """The window's /predict request volume and refusal rate (share answered 4xx).

    From Prometheus when it answers (the increase of onebox_http_requests_total over the
    window, evaluated at its end); otherwise nulls, and the volume is the prediction log's
    rows per minute ("volume_source" says which).  Never raises: Prometheus being slow or
    away costs at most a couple of seconds and some n/a, not the report.
    """
    minutes = None if start is None or end is None else (end - start).total_seconds() / 60
    if not prometheus_url:
        note = "PROMETHEUS_URL is not set"
    elif start is None or end is None:
        note = "the window has no timestamps to ask Prometheus about"
    else:
        try:
            counts = _prometheus_counts(prometheus_url, start, end)
        except (requests.RequestException, ValueError, LookupError, TypeError,
                AttributeError) as exc:  # AttributeError: an answer that is not an object
            # The exception's text may carry the URL (and any credentials in it): not kept.
            note = f"Prometheus did not answer ({type(exc).__name__})"
        else:
            if counts is not None:
                total, refused, seconds = counts
                return {"requests": round(total, 3),
                        "requests_per_minute": total * 60 / seconds,
                        "refusal_rate": refused / total if total > 0 else None,
                        "volume_source": VOLUME_FROM_PROMETHEUS, "volume_note": None}
            note = f"Prometheus has no {PREDICT_ENDPOINT} request counts for the window"
    per_minute = rows / minutes if minutes else None
    return {"requests": None, "requests_per_minute": per_minute, "refusal_rate": None,
            "volume_source": VOLUME_FROM_LOG if per_minute is not None else None,
            "volume_note": note}


def _prometheus_counts(url: str, start: datetime, end: datetime
                       ) -> tuple[float, float, int] | None:
    """(requests, refused requests, range seconds) to /predict over the window, or None
    when Prometheus holds no such counter for it."""
    seconds = max(1, math.ceil((end - start).total_seconds()))
    selector = f'endpoint="{PREDICT_ENDPOINT}"'
    total = _instant_value(url, f"sum(increase({REQUESTS_METRIC}{{{selector}}}[{seconds}s]))",
                           end)
    if total is None:
        return None
    refused = _instant_value(
        url, f'sum(increase({REQUESTS_METRIC}{{{selector},status=~"4.."}}[{seconds}s]))', end)
    return total, refused or 0.0, seconds


def _instant_value(url: str, query: str, at: datetime) -> float | None:
    """The one value of an instant query (a sum), or None when it matched no series."""
    answer = requests.get(f"{url.rstrip('/')}/api/v1/query",
                          params={"query": query, "time": f"{at.timestamp():.3f}"},
                          timeout=PROMETHEUS_TIMEOUT_SECONDS)
    answer.raise_for_status()
    body = answer.json()
    if body.get("status") != "success":
        raise ValueError(f"query failed: {body.get('error')}")
    result = body["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


# --- the index ------------------------------------------------------------------------------

# (header, tooltip) of the windows' table; an arrow says which way is worse.
WINDOW_COLUMNS = (
    ("window end (UTC)", "When the window's newest prediction was logged (for older reports: "
     "when the report was written). Newest first."),
    ("report", "The window's Evidently drift report against the champion's reference sample."),
    ("model", "The version that served the window; it links the version's model card."),
    ("rows", "Logged predictions in the window."),
    ("requests / min", "Requests to /predict per minute over the window, from Prometheus. "
     "Marked (log): the prediction log's rows per minute, when Prometheus was not set or "
     "did not answer. Neither way is bad by itself."),
    ("refusal rate ↑ worse", "Share of /predict requests answered 4xx (missing or wrong key, "
     "invalid records) over the window, from Prometheus. The higher, the worse."),
    ("drift share ↑ worse", "Share of the model's features whose drift test failed against "
     "the champion's reference sample. The higher, the worse; the alarm rises at its "
     "threshold."),
    ("drifted features — any is worse", "Features whose distribution moved, then relations "
     "between features that moved (\"x | others\"). \"none\" is good."),
    ("prediction drift — “drifted” is worse", "Whether the distribution of the predicted "
     "probability moved against the reference, with the test's p-value: a small p-value is "
     "evidence of drift (\"drifted\" when it is below the test's threshold)."),
    ("labels", "Predictions of the window whose real outcome has arrived (live quality's "
     "evidence: the more, the surer)."),
)
LIVE_AUC_COLUMN = (
    "live AUC ↓ worse", "AUC of the window's labelled predictions against their real "
    "outcomes. The lower, the worse; below the quality floor the alarm rises.")
LIVE_RMSE_COLUMN = (
    "live RMSE ↑ worse", "Root mean squared error of the window's labelled predictions (a "
    "regression model's numbers) against their real outcomes, in the target's unit. The "
    "higher, the worse; above QUALITY_MAX_ERROR_RATIO times the holdout's and above the "
    "holdout's by more than three standard errors (the window's limit: the chart's line is "
    "the newest's), the alarm rises.")
ESTIMATED_AUC_COLUMN = (
    "estimated AUC ↓ worse", "AUC the window should have, estimated from its predicted "
    "probabilities alone (CBPE: no labels needed, ready at once). It assumes only the "
    "customers changed: a change in how churn follows the features shows in the live AUC "
    "only. The lower, the worse; the EstimatedQualityLow alert fires below the gate's AUC "
    "minus ESTIMATED_AUC_MARGIN.")
ESTIMATED_RMSE_COLUMN = (
    "estimated RMSE ↑ worse", "RMSE the window should have, estimated from its features and "
    "predictions alone (DLE: models of the error that travel with the version; no labels "
    "needed, ready at once). It assumes only the inputs moved: a change in how the target "
    "follows them shows in the live RMSE only. The higher, the worse; the "
    "EstimatedQualityLow alert fires above QUALITY_MAX_ERROR_RATIO times the holdout's.")
QUALITY_REPORT_COLUMN = (
    "quality report", "Evidently's quality report of the labelled predictions "
    "(classification, or regression).")
CARD_COLUMNS = (
    ("model", "The registered model."),
    ("version", "The registered version; newest first."),
    ("created (UTC)", "When the version was registered."),
    ("holdout score [CI]", "The gate's metric on the held-out test split, with its "
     "confidence interval: AUC (the lower, the worse) or an error such as RMSE, in the "
     "target's unit (the higher, the worse)."),
    ("gate decision", "Whether the promotion gate made this version @champion, and why."),
    ("champion then", "The @champion it was compared with, and its score on the same "
     "holdout."),
    ("model card", "The version's model card."),
)


def write_index(reports_dir: Path, *, min_auc: float | None = None) -> Path:
    """Rebuild index.html from the JSON summaries in the folder: trend charts over the
    windows (oldest left), the windows newest first, and the model versions' cards.

    `min_auc`: the live AUC's floor drawn on its chart (default: the newest summary's).
    Summaries written before a figure existed show "n/a" for it; a summary or card being
    written right now (not JSON yet) is left for the next rebuild.
    """
    summaries = [s for path in reports_dir.glob(f"drift-*{SUMMARY_SUFFIX}")
                 if (s := _read_json(path)) is not None]
    summaries.sort(key=_window_time)
    newest_first = summaries[::-1]
    if min_auc is None:
        min_auc = _newest_number(summaries, lambda s: s.get("quality_min_auc"))
    estimated = any(_number(_quality(s).get("estimated_auc")) is not None for s in summaries)
    # The live figures of the windows' tasks: an AUC (binary), an RMSE (regression).
    shown = LiveFigures(
        error=any(_number(_quality(s).get("rmse")) is not None for s in summaries),
        auc=any(_number(_quality(s).get("auc")) is not None for s in summaries),
        estimated=estimated, min_auc=min_auc, error_limit=_error_limit(summaries),
        live_error_limit=_newest_number(summaries, lambda s: live_error_limit(s, None)),
        estimated_error=any(_number(_quality(s).get("estimated_rmse")) is not None
                            for s in summaries))
    columns = [*WINDOW_COLUMNS, *([LIVE_AUC_COLUMN] if shown.shows_auc else []),
               *([LIVE_RMSE_COLUMN] if shown.error else []),
               *([ESTIMATED_AUC_COLUMN] if estimated else []),
               *([ESTIMATED_RMSE_COLUMN] if shown.estimated_error else []),
               QUALITY_REPORT_COLUMN]
    rows = "\n".join(_index_row(s, reports_dir, shown) for s in newest_first) or (
        f'<tr><td colspan="{len(columns)}">No reports yet.</td></tr>')
    charts = (_charts(summaries, shown) if summaries
              else "<p>No windows yet: the charts start with the first report.</p>")
    cards = _read_cards(reports_dir)
    card_rows = "\n".join(_card_row(c, reports_dir) for c in cards) or (
        f'<tr><td colspan="{len(CARD_COLUMNS)}">No model cards yet.</td></tr>')
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>onebox drift reports</title>
<style>
{HEADER_CSS}
body {{ font-family: system-ui, sans-serif; margin: 1rem 2rem 2rem; color: #1f2328; }}
h1 {{ font-size: 1.6rem; margin: .5rem 0; }}
h2 {{ font-size: 1.25rem; margin: 1.5rem 0 .4rem; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ padding: .3rem .45rem; border-bottom: 1px solid #ddd; text-align: left;
         vertical-align: top; }}
th {{ font-size: 13px; vertical-align: bottom; }}
th[title] {{ cursor: help; text-decoration: underline dotted; }}
td.list {{ overflow-wrap: anywhere; }}
.whole, .models td:nth-child(3) {{ white-space: nowrap; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1rem 1.75rem; margin: .75rem 0 1rem; }}
figure.trend {{ margin: 0; }}
figure.trend figcaption {{ max-width: 300px; font-size: 13px; color: #555; }}
dl.legend {{ display: grid; grid-template-columns: max-content minmax(0, 1fr);
            gap: .1rem 1rem; margin: .6rem 0 0; font-size: 13px; color: #333; }}
dl.legend dt {{ font-weight: 600; }}
dl.legend dd {{ margin: 0; }}
.drifted, .bad {{ color: #b00020; font-weight: 600; }}
.hint {{ color: #555; }}
</style></head>
<body>{header_html("/reports/")}
<h1>onebox drift reports</h1>
<p>{len(summaries)} report(s), newest first. Drift share: the share of the model's features
whose drift test failed against the champion's reference sample. Live quality: the logged
decisions of the window's predictions whose real outcome has arrived.</p>
<h2>Trends</h2>
<p class="hint">One point per window, oldest on the left; times in UTC. Each title says
which way is better; a dashed red line is the alarm's limit, and points on its bad side are
red.</p>
<div class="charts">
{charts}
</div>
<h2>Windows</h2>
<p class="hint">One row per window, newest first. “↑ worse”: the higher, the worse;
“↓ worse”: the lower, the worse. Each column is explained under the table.</p>
<table class="windows"><thead><tr>{_headers(columns)}</tr></thead>
<tbody>
{rows}
</tbody></table>
{_legend(columns)}
<h2>Model versions</h2>
<table class="models"><thead><tr>{_headers(CARD_COLUMNS)}</tr></thead>
<tbody>
{card_rows}
</tbody></table>
{_legend(CARD_COLUMNS, CARD_LEGEND)}
</body></html>
"""
    index_path = reports_dir / INDEX_FILE
    atomic_write(index_path, lambda p: p.write_text(page, encoding="utf-8"))
    return index_path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # being written right now, or broken: the next rebuild may list it
    return data if isinstance(data, dict) else None


def _when(value: Any) -> datetime | None:
    """A timestamp (ISO text, pandas or datetime) as an aware UTC datetime; naive is UTC."""
    if value is None or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.floor("us").to_pydatetime()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _window_time(s: dict[str, Any]) -> datetime:
    """Where the window sits in time: its newest prediction, else when it was reported."""
    return _when(s.get("window_end")) or _when(s.get("created_at")) or EPOCH


def _time_text(s: dict[str, Any], fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    when = _window_time(s)
    return "n/a" if when == EPOCH else when.strftime(fmt)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _newest_number(chronological: list[dict[str, Any]], get: Any) -> float | None:
    for s in reversed(chronological):
        if (value := _number(get(s))) is not None:
            return value
    return None


def _quality(s: dict[str, Any]) -> dict[str, Any]:
    quality = s.get("quality")
    return quality if isinstance(quality, dict) else {}


@dataclass(frozen=True)
class LiveFigures:
    """Which live figures the index shows, and their limits: the AUC of binary windows,
    the RMSE of regression windows (a folder holds one business's reports, but a version
    from before either figure shows n/a)."""

    error: bool
    auc: bool
    estimated: bool
    min_auc: float | None
    # A number's RMSE limit for the label-free estimate (the holdout's times the ratio)
    # and, drawn on the live chart, the newest window's live limit (that plus the sampling
    # error of its labelled rows: each window's own is in its summary).
    error_limit: float | None
    live_error_limit: float | None = None
    # A number's label-free RMSE (DLE), held to the holdout's times the ratio.
    estimated_error: bool = False

    @property
    def shows_auc(self) -> bool:
        return self.auc or not self.error


def live_error_limit(summary: dict[str, Any], fallback: float | None) -> float | None:
    """A window's live RMSE limit (core.task live_error_limits), as its summary recorded
    it; a summary from before the limits were recorded: `fallback`."""
    limits = summary.get("live_limits") if isinstance(summary.get("live_limits"), dict) else {}
    limit = _number(limits.get("rmse"))
    return fallback if limit is None else limit


def _error_limit(chronological: list[dict[str, Any]]) -> float | None:
    """The newest window's RMSE alarm limit: its version's holdout RMSE times the ratio."""
    for s in reversed(chronological):
        reference = s.get("reference") if isinstance(s.get("reference"), dict) else {}
        rmse, ratio = _number(reference.get("rmse")), _number(s.get("quality_max_error_ratio"))
        if rmse is not None and ratio is not None:
            return rmse * ratio
    return None


def _time_labels(chronological: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Each window's time as its point's label, and the texts under the chart's first and
    last point: minutes, or seconds where two windows share a minute, so that no two
    windows read alike; the last text without the date (or the year) it shares with the
    first, so both fit under the chart."""
    times = [_window_time(s) for s in chronological]
    known = {t for t in times if t != EPOCH}
    same_minute = len({t.replace(second=0, microsecond=0) for t in known}) < len(known)
    clock = "%H:%M:%S" if same_minute else "%H:%M"
    labels = ["n/a" if t == EPOCH else t.strftime(f"%Y-%m-%d {clock}") for t in times]
    if not times:
        return labels, []
    first, last = times[0], times[-1]
    if first == EPOCH or last == EPOCH or first.year != last.year:
        last_text = labels[-1]
    elif first.date() == last.date():
        last_text = last.strftime(clock)
    else:
        last_text = last.strftime(f"%m-%d {clock}")
    return labels, [labels[0], last_text]


# The line under each chart: what is drawn, in a few words (the table's legend says more).
CHART_NOTES = {
    "Drift share": "Share of the model's features whose own drift test failed (0 to 1); "
                   "dashed: the alarm's threshold.",
    "Live AUC": "AUC of each window's labelled predictions (0 to 1); dashed: the floor the "
                "alarm rises under.",
    "Live RMSE": "Error of each window's labelled numbers, in the target's unit; dashed: the "
                 "newest window's alarm limit.",
    "Estimated AUC": "AUC expected from the predictions alone, before any label (CBPE); "
                     "dashed: the alert's floor.",
    "Estimated RMSE": "Error expected from the inputs alone, before any label (DLE); dashed: "
                      "the alert's limit.",
    "Requests per minute": "Calls to /predict per minute, from Prometheus (not drawn "
                           "without it).",
    "Refusal rate (4xx)": "Share of /predict calls refused (a bad key or an invalid record), "
                          "from Prometheus; 0 to 100%.",
}


def _charts(chronological: list[dict[str, Any]], shown: LiveFigures) -> str:
    """One small chart per figure, one point per window, oldest left, each on its own
    range (a share 0 to 1, an AUC within [0, 1], an error or a volume from 0), with a line
    under it saying what it draws."""
    min_auc, estimated = shown.min_auc, shown.estimated
    labels, axis = _time_labels(chronological)

    def series(get: Any) -> list[float | None]:
        return [_number(get(s)) for s in chronological]

    def chart(title: str, values: list[float | None], **options: Any) -> str:
        svg = trend_chart(values, labels, title=title, axis_labels=axis, **options)
        return (f'<figure class="trend">{svg}<figcaption>{html.escape(CHART_NOTES[title])}'
                "</figcaption></figure>")

    share_limit = _newest_number(chronological, lambda s: s.get("drift_share_threshold"))
    auc_label = "" if min_auc is None else f"floor {min_auc:.2f}"
    charts = [
        chart("Drift share", series(lambda s: s.get("drift_share")), better="lower",
              scale="share", limit=share_limit,
              limit_label="" if share_limit is None else f"alarm ≥ {share_limit:.2f}"),
    ]
    if shown.shows_auc:
        charts.append(chart("Live AUC", series(lambda s: _quality(s).get("auc")),
                            better="higher", scale="unit", limit=min_auc,
                            limit_label=auc_label, fmt="{:.3f}"))

    def error_chart(key: str, title: str, crossing: str, limit: float | None) -> str:
        return chart(title, series(lambda s: _quality(s).get(key)), better="lower",
                     scale="from_zero", limit=limit, fmt="{:.4g}",
                     limit_label="" if limit is None else f"{crossing} > {limit:.4g}")

    if shown.error:
        # The newest window's limit: each window's own depends on its labels.
        charts.append(error_chart("rmse", "Live RMSE", "alarm",
                                  shown.live_error_limit or shown.error_limit))
    if estimated:
        # The estimate is held to the champion's own holdout AUC (less the margin), not to
        # the live floor: it is the alert's line, drawn where the newest window had it.
        floor = _newest_number(chronological, lambda s: s.get("estimated_auc_floor"))
        charts.append(chart(
            "Estimated AUC", series(lambda s: _quality(s).get("estimated_auc")),
            better="higher", scale="unit", limit=min_auc if floor is None else floor,
            limit_label=auc_label if floor is None else f"alert < {floor:.3f}",
            fmt="{:.3f}"))
    if shown.estimated_error:
        charts.append(error_chart("estimated_rmse", "Estimated RMSE", "alert",
                                  shown.error_limit))
    charts += [
        # Requests, not logged rows (a batch is one request, many rows): the log's figure
        # stands in for Prometheus in the table, marked, but is not drawn on this line.
        chart("Requests per minute", series(lambda s: s.get("requests_per_minute")
                                            if s.get("volume_source") == VOLUME_FROM_PROMETHEUS
                                            else None),
              scale="from_zero", fmt="{:.1f}"),
        chart("Refusal rate (4xx)", series(lambda s: s.get("refusal_rate")), better="lower",
              scale="share", fmt="{:.1%}"),
    ]
    return "\n".join(charts)


def _headers(columns: Any) -> str:
    e = html.escape
    return "".join(f'<th title="{e(tip)}">{e(name)}</th>' for name, tip in columns)


# The line each column gets in the legend under its table (the header's tooltip says more).
LEGEND = {
    "window end (UTC)": "when the window's newest prediction was logged",
    "report": "the window's drift report: our summary, then Evidently's detail",
    "model": "the version that served the window (links its model card)",
    "rows": "predictions logged in the window",
    "requests / min": "calls to /predict per minute, from Prometheus; “(log)”: the "
                      "prediction log's rows per minute instead",
    "refusal rate ↑ worse": "share of /predict calls refused (4xx: a bad key, an invalid "
                            "record)",
    "drift share ↑ worse": "share of the features whose own drift test failed; the alarm "
                           "rises at its threshold",
    "drifted features — any is worse": "features whose distribution moved, then relations "
                                       "that moved (“x | others”, “features jointly”)",
    "prediction drift — “drifted” is worse": "whether the predictions' distribution moved, "
                                            "with its test's p-value",
    "labels": "predictions whose real outcome has arrived",
    "live AUC ↓ worse": "AUC of the labelled predictions; below the floor the alarm rises",
    "live RMSE ↑ worse": "error of the labelled numbers, in the target's unit; above the "
                         "window's limit the alarm rises",
    "estimated AUC ↓ worse": "AUC expected from the predictions alone, before any label",
    "estimated RMSE ↑ worse": "error expected from the inputs alone, before any label",
    "quality report": "Evidently's report of the labelled predictions against their outcomes",
    "version": "the registered version, newest first",
    "created (UTC)": "when the version was registered",
    "holdout score [CI]": "the gate's metric on the held-out test rows, with its "
                          "confidence interval",
    "gate decision": "whether the promotion gate made the version @champion, and why",
    "champion then": "the @champion it was compared with, and its score",
    "model card": "the version's model card",
}
# The same header in the versions' table.
CARD_LEGEND = {**LEGEND, "model": "the registered model"}


def _legend(columns: Any, legend: dict[str, str] = LEGEND) -> str:
    """The columns' short explanations, visible under the table."""
    e = html.escape
    items = "".join(f"<dt>{e(name)}</dt><dd>{e(legend.get(name) or tip)}</dd>"
                    for name, tip in columns)
    return f'<dl class="legend">{items}</dl>'


def _link(target: Any, text: str) -> str:
    """A link to a file beside the index (or under it); "n/a" without one."""
    if not isinstance(target, str) or not target:
        return "n/a"
    return f'<a href="{html.escape(quote(target))}">{html.escape(text)}</a>'


def _card_href(reports_dir: Path, model_name: Any, version: Any) -> str | None:
    """The model card's path relative to the index, when the card has been written."""
    if not model_name or version is None:
        return None
    path = card_path(reports_dir, str(model_name), str(version))
    return f"{CARDS_DIR}/{path.name}" if path.is_file() else None


def _fmt(value: Any, fmt: str) -> str:
    number = _number(value)
    return "n/a" if number is None else fmt.format(number)


def _index_row(s: dict[str, Any], reports_dir: Path, shown: LiveFigures) -> str:
    e = html.escape
    report = s.get("report")
    report_cell = _link(Path(report).name if isinstance(report, str) else None,
                        str(s.get("title") or "drift report"))
    model = f"{s.get('model_name', 'n/a')} v{s.get('model_version', '?')}"
    card = _card_href(reports_dir, s.get("model_name"), s.get("model_version"))
    model_cell = _link(card, model) if card else e(model)
    rows = _fmt(s.get("current_rows"), "{:.0f}")
    per_minute = _fmt(s.get("requests_per_minute"), "{:.1f}")
    if per_minute != "n/a" and s.get("volume_source") == VOLUME_FROM_LOG:
        per_minute += " (log)"
    note = s.get("volume_note")
    volume_title = f' title="{e(str(note))}"' if note else ""
    # Features whose own distribution moved, then relations that moved ("x | others").
    if "drifted_features" in s:
        named = list(s.get("drifted_features") or []) + list(s.get("drifted_relations") or [])
        drifted = ", ".join(str(n) for n in named) or "none"
    else:
        named, drifted = [], "n/a"
    css = ' class="drifted"' if named or s.get("drift_detected") else ""
    # Date and time each kept whole: the cell breaks between them, never inside.
    when = " ".join(f'<span class="whole">{e(part)}</span>' for part in _time_text(s).split())
    cells = [
        when, report_cell, model_cell, e(rows),
        f"<span{volume_title}>{e(per_minute)}</span>",
        e(_fmt(s.get("refusal_rate"), "{:.1%}")),
    ]
    row = "".join(f"<td>{cell}</td>" for cell in cells)
    row += (f"<td{css}>{e(_fmt(s.get('drift_share'), '{:.2f}'))}</td>"
            f'<td class="list{" drifted" if css else ""}">{e(drifted)}</td>'
            f"{_prediction_cell(s.get('prediction_drift'))}"
            f"{_quality_cells(s, shown)}")
    return f"<tr>{row}</tr>"


def _prediction_cell(prediction: Any) -> str:
    """A verdict first, the evidence after: "drifted (p = 0.020)", "no (p = 1.000)"."""
    if not isinstance(prediction, dict) or _number(prediction.get("score")) is None:
        return "<td>n/a</td>"
    evidence = f"p = {p_text(prediction['score'])}"
    threshold = _number(prediction.get("threshold"))
    tip = ("" if threshold is None else
           f' title="drifted when p &lt; {html.escape(p_text(threshold))}"')
    if prediction.get("drifted"):
        return f'<td class="drifted"{tip}>drifted ({html.escape(evidence)})</td>'
    return f"<td{tip}>no ({html.escape(evidence)})</td>"


def _quality_cells(s: dict[str, Any], shown: LiveFigures) -> str:
    quality = _quality(s)
    labels = int(_number(quality.get("labels")) or 0)
    min_auc = shown.min_auc

    def auc_cell(value: Any) -> str:
        auc = _number(value)
        low = auc is not None and min_auc is not None and auc < min_auc
        css = ' class="bad"' if low else ""
        return f"<td{css}>{'n/a' if auc is None else f'{auc:.3f}'}</td>"

    def error_cell(value: Any, limit: float | None) -> str:
        error = _number(value)
        high = error is not None and limit is not None and error > limit
        css = ' class="bad"' if high else ""
        return f"<td{css}>{'n/a' if error is None else f'{error:.4g}'}</td>"

    page = quality.get("report")
    kind = "regression quality" if _number(quality.get("rmse")) is not None else (
        "classification quality")
    link = (_link(Path(page).name, kind) if isinstance(page, str) and page
            else "n/a" if labels else "no labels yet")
    live_rmse = error_cell(quality.get("rmse"), live_error_limit(s, shown.error_limit))
    estimated_rmse = error_cell(quality.get("estimated_rmse"), shown.error_limit)
    return (f"<td>{labels}</td>"
            f"{auc_cell(quality.get('auc')) if shown.shows_auc else ''}"
            f"{live_rmse if shown.error else ''}"
            f"{auc_cell(quality.get('estimated_auc')) if shown.estimated else ''}"
            f"{estimated_rmse if shown.estimated_error else ''}"
            f"<td>{link}</td>")


def _read_cards(reports_dir: Path) -> list[dict[str, Any]]:
    """The model cards' JSON summaries, newest version first; broken ones skipped."""
    folder = reports_dir / CARDS_DIR
    if not folder.is_dir():
        return []
    cards = [card for path in folder.glob(f"*{SUMMARY_SUFFIX}")
             if not path.name.startswith(".")
             and (card := _read_json(path)) is not None
             and card.get("model_name") and card.get("version") is not None]

    def newest(card: dict[str, Any]) -> tuple[int, str, str]:
        version = str(card["version"])
        return (int(version) if version.isdigit() else -1, str(card.get("created_at") or ""),
                str(card["model_name"]))

    return sorted(cards, key=newest, reverse=True)


def _card_row(card: dict[str, Any], reports_dir: Path) -> str:
    e = html.escape
    # Summaries name their keys after the gate's metric; those from before a number could
    # be served have none and were judged on AUC.
    metric = str(card.get("gate_metric") or "auc")
    fmt = "{:.3f}" if metric == "auc" else "{:.4g}"
    score = _fmt(card.get(f"holdout_{metric}"), fmt)
    ci = card.get(f"holdout_{metric}_ci")
    if (score != "n/a" and isinstance(ci, list | tuple) and len(ci) == 2
            and all(_number(v) is not None for v in ci)):
        score += f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"
    score = f"{metric.upper()} {score}"
    decision = str(card.get("gate_decision") or "n/a")
    reason = card.get("gate_reason")
    gate = e(decision) + (f": {e(str(reason))}" if reason else "")
    champion = card.get("champion_version")
    champion_text = ("none" if champion is None else
                     f"v{champion} ({metric.upper()} "
                     f"{_fmt(card.get(f'champion_{metric}'), fmt)})")
    created = _when(card.get("created_at"))
    href = _card_href(reports_dir, card["model_name"], card["version"])
    cells = [e(str(card["model_name"])), e(f"v{card['version']}"),
             "n/a" if created is None else e(created.strftime("%Y-%m-%d %H:%M:%S")),
             e(score), gate, e(champion_text),
             _link(href, "model card") if href else "card not written yet"]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def report_latest_window(settings: Settings, window_rows: int) -> ReportFiles:
    """Report on the newest `window_rows` predictions the champion served."""
    model, window = read_champion_window(settings, window_rows)
    if window.empty:
        raise EmptyWindow(f"no predictions of {model.name} v{model.version} logged in "
                          f"{settings.prediction_store_shown}")
    return write_report(window_from_log(window, model), model, settings.reports_dir,
                        title=f"Last {len(window)} predictions",
                        policy=DriftPolicy.from_settings(settings),
                        prometheus_url=settings.prometheus_url,
                        estimated_auc_margin=settings.estimated_auc_margin)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a drift report of the latest window.")
    parser.add_argument("--window", type=int, default=1000,
                        help="number of most recent predictions to compare (default 1000)")
    args = parser.parse_args(argv)
    try:
        files = report_latest_window(Settings.from_env(), args.window)
    except EmptyWindow as empty:
        parser.exit(1, f"nothing to report: {empty}\n")
    print(f"report: {files.html}\nindex:  {files.index}\n"
          f"drift share {files.summary_data['drift_share']:.2f}, drifted features: "
          f"{', '.join(files.summary_data['drifted_features']) or 'none'}")


if __name__ == "__main__":
    main()
