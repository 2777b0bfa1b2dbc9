"""Drift reports: an Evidently HTML report per window of logged predictions against
the champion's reference sample, a classification-quality report of the same
window's labelled predictions (where feedback has arrived), a JSON summary beside
them, and an index page listing every report newest first with its headline numbers.

The reports folder is what nginx serves in the stack.
"""

from __future__ import annotations

import argparse
import html
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core import registry
from core.registry import PREDICTION_COLUMN, LoadedModel
from core.settings import Settings
from core.store import PredictionStore
from monitoring.drift import compute_drift
from monitoring.quality import live_quality

INDEX_FILE = "index.html"
SUMMARY_SUFFIX = ".json"
# Fewer labels than this make precision/recall/AUC noise, not a quality report.
MIN_QUALITY_LABELS = 30


class EmptyWindow(RuntimeError):
    """There are no logged predictions to report on."""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    summary: Path
    index: Path
    summary_data: dict[str, Any]
    quality_html: Path | None = None


def window_from_log(frame: pd.DataFrame) -> pd.DataFrame:
    """The prediction log's rows as a drift window: features plus `prediction`."""
    return frame.rename(columns={"probability": PREDICTION_COLUMN})


def write_report(
    window: pd.DataFrame,
    model: LoadedModel,
    reports_dir: Path,
    *,
    title: str = "Data drift",
    now: datetime | None = None,
) -> ReportFiles:
    """Write the HTML report and its summary for one window, then rebuild the index."""
    if window.empty:
        raise EmptyWindow("no predictions in the window")
    now = now or datetime.now(UTC)
    drift = compute_drift(model.reference(), window, model.schema)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"drift-{now:%Y%m%dT%H%M%S%fZ}"
    html_path = reports_dir / f"{stem}.html"
    summary_path = reports_dir / f"{stem}{SUMMARY_SUFFIX}"
    labelled = _labelled(window)
    quality = live_quality(labelled.rename(columns={PREDICTION_COLUMN: "probability"}))
    quality_path = None
    if quality.labels >= MIN_QUALITY_LABELS and quality.auc is not None:
        quality_path = reports_dir / f"quality-{stem.removeprefix('drift-')}.html"
    created = window["created_at"] if "created_at" in window else pd.Series(dtype=object)
    summary = {
        "title": title,
        "report": html_path.name,
        "created_at": now.isoformat(),
        "model_name": model.name,
        "model_version": model.version,
        "window_start": None if created.empty else str(created.min()),
        "window_end": None if created.empty else str(created.max()),
        **drift.summary(),
        "quality": {**quality.as_dict(),
                    "report": None if quality_path is None else quality_path.name},
    }
    _atomic_write(html_path, lambda p: drift.snapshot.save_html(str(p)))
    if quality_path is not None:
        snapshot = _classification_snapshot(labelled)
        _atomic_write(quality_path, lambda p: snapshot.save_html(str(p)))
    # The summary last: the index lists a report only once its pages exist.
    _atomic_write(summary_path, lambda p: p.write_text(json.dumps(summary, indent=2)))
    index_path = write_index(reports_dir)
    return ReportFiles(html_path, summary_path, index_path, summary, quality_path)


def _labelled(window: pd.DataFrame) -> pd.DataFrame:
    """The window's rows whose real outcome has arrived (none for unlabelled windows)."""
    needed = {"actual", "decision", PREDICTION_COLUMN}
    if not needed <= set(window.columns):
        return pd.DataFrame(columns=sorted(needed))
    return window[window["actual"].notna()]


def _classification_snapshot(labelled: pd.DataFrame) -> Any:
    """Evidently's classification quality of the logged decisions against the outcomes."""
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
    return Report([ClassificationPreset()]).run(
        current_data=Dataset.from_pandas(data, data_definition=definition))


def write_index(reports_dir: Path) -> Path:
    """Rebuild index.html from the summaries in the folder, newest first."""
    summaries = []
    for path in reports_dir.glob(f"drift-*{SUMMARY_SUFFIX}"):
        try:
            summaries.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a summary being written right now; the next rebuild lists it
    summaries.sort(key=lambda s: s["created_at"], reverse=True)
    rows = "\n".join(_index_row(s) for s in summaries) or (
        '<tr><td colspan="10">No reports yet.</td></tr>')
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>onebox drift reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .35rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }}
.drifted {{ color: #b00020; font-weight: 600; }}
</style></head>
<body><h1>onebox drift reports</h1>
<p>{len(summaries)} report(s), newest first. Drift share: the share of the model's features
whose drift test failed against the champion's reference sample. Live quality: the logged
decisions of the window's predictions whose real outcome has arrived.</p>
<table><thead><tr><th>created (UTC)</th><th>report</th><th>model</th><th>rows</th>
<th>drift share</th><th>drifted features</th><th>prediction drift</th>
<th>labels</th><th>live AUC</th><th>quality report</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    index_path = reports_dir / INDEX_FILE
    _atomic_write(index_path, lambda p: p.write_text(page, encoding="utf-8"))
    return index_path


def _index_row(s: dict[str, Any]) -> str:
    e = html.escape
    # Features whose own distribution moved, then relations that moved ("x | others").
    named = (s.get("drifted_features") or []) + (s.get("drifted_relations") or [])
    drifted = ", ".join(named) or "none"
    prediction = s.get("prediction_drift") or {}
    pred_text = ("n/a" if not prediction else
                 f"{prediction['score']:.3f}{' (drifted)' if prediction['drifted'] else ''}")
    css = ' class="drifted"' if named else ""
    return (f"<tr><td>{e(s['created_at'][:19])}</td>"
            f"<td><a href=\"{e(s['report'])}\">{e(s['title'])}</a></td>"
            f"<td>{e(s['model_name'])} v{e(str(s['model_version']))}</td>"
            f"<td>{int(s['current_rows'])}</td>"
            f"<td{css}>{float(s['drift_share']):.2f}</td>"
            f"<td{css}>{e(drifted)}</td><td>{e(pred_text)}</td>{_quality_cells(s)}</tr>")


def _quality_cells(s: dict[str, Any]) -> str:
    quality = s.get("quality") or {}
    labels = int(quality.get("labels") or 0)
    auc = quality.get("auc")
    page = quality.get("report")
    link = (f'<a href="{html.escape(page)}">classification quality</a>' if page
            else "n/a" if labels else "no labels yet")
    return (f"<td>{labels}</td><td>{'n/a' if auc is None else f'{auc:.3f}'}</td>"
            f"<td>{link}</td>")


def _atomic_write(path: Path, write: Any) -> None:
    # nginx may serve the file while it is written: write aside, then rename.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def report_latest_window(settings: Settings, window_rows: int) -> ReportFiles:
    """Report on the newest `window_rows` logged predictions of the champion."""
    client = registry.connect(settings)
    model = registry.load_champion(client, settings)
    if model is None:
        raise RuntimeError(f"no @{registry.CHAMPION} for {settings.model_name}: train first")
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    try:
        store.create_schema()
        window = store.recent(window_rows)
    finally:
        store.dispose()
    if window.empty:
        raise EmptyWindow(f"no logged predictions in {settings.prediction_store_shown}")
    return write_report(window_from_log(window), model, settings.reports_dir,
                        title=f"Last {len(window)} predictions")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a drift report of the latest window.")
    parser.add_argument("--window", type=int, default=1000,
                        help="number of most recent predictions to compare (default 1000)")
    args = parser.parse_args(argv)
    files = report_latest_window(Settings.from_env(), args.window)
    print(f"report: {files.html}\nindex:  {files.index}\n"
          f"drift share {files.summary_data['drift_share']:.2f}, drifted features: "
          f"{', '.join(files.summary_data['drifted_features']) or 'none'}")


if __name__ == "__main__":
    main()
