"""A model card as one self-contained HTML page, readable offline.

The card (reporting.model_card.card) opens with the project's header, then says what the
model is for and where it is not to be trusted (from the schema), what the version saw,
its figure on the gate's metric with a bootstrap confidence interval, its task's holdout
section (a binary model's calibration, ROC and precision-recall curves, how its threshold
was chosen and the confusion there; a number's errors, predicted against actual and
residuals by segment), the features it leans on (XGBoost's own TreeSHAP), the evidence
the gate weighed against the champion, its training run (linked in MLflow's UI) with its
hyperparameters, and the schema.  Pictures are inline SVG (reporting.charts, and the
curves here) and the style inline: no script, nothing fetched, so it reads the same from
nginx, from a file:// URL or from MLflow.  Its links are the front door's paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import pandas as pd

from core.page_header import HEADER_CSS, header_html
from core.schema import Feature, Schema
from core.task import task_of
from reporting.charts import FONT, GRID, LINE, bar_chart, curve_chart, scatter_chart
from reporting.model_card.card import (
    BinaryHoldout,
    Holdout,
    ModelCard,
    RegressionHoldout,
)
from reporting.model_card.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    SEGMENT_BY_VALUE_MAX,
    SHAP_MAX_ROWS,
    Curves,
)

TOP_FEATURES = 12


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #ddd; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.headline { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1rem 0; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 11rem; }
.figure .value { font-size: 1.5rem; font-weight: 600; }
.figure .label { color: #555; font-size: .85rem; }
.promoted { color: #1a7f37; } .rejected { color: #b00020; }
.charts { display: flex; gap: 2rem; flex-wrap: wrap; align-items: flex-start; }
.note { color: #555; font-size: .9rem; }
table, svg { max-width: 100%; }
svg { height: auto; }
td, th { overflow-wrap: break-word; }
a { color: #0969da; }
"""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def score_format(metric: str, signed: bool = False) -> str:
    """AUC in four decimals (as the gate logs it); an error in the target's unit, four
    significant digits; `signed`: with its sign."""
    sign = "+" if signed else ""
    return f"{{:{sign}.4f}}" if metric == "auc" else f"{{:{sign}.4g}}"


def _score(value: float | None, metric: str = "auc") -> str:
    return "n/a" if value is None else score_format(metric).format(value)


def _interval(ci: tuple[float, float] | None, signed: bool = False,
              metric: str = "auc") -> str:
    if ci is None:
        return "n/a"
    fmt = score_format(metric, signed)
    return f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the prediction log stores UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: Sequence[int] = ()) -> str:
    """A table of already escaped cells; the columns in `numeric` align right."""
    def cell(tag: str, i: int, text: str) -> str:
        css = ' class="num"' if i in numeric else ""
        return f"<{tag}{css}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                     for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _figure(value: str, label: str, css: str = "") -> str:
    return (f'<div class="figure"><div class="value{" " + css if css else ""}">{value}</div>'
            f'<div class="label">{label}</div></div>')


def interval_chart(items: Sequence[tuple[str, float, tuple[float, float]]], *, title: str,
                   width: int = 420, fmt: str = "{:.4f}") -> str:
    """Point estimates with their intervals on one shared axis (a forest plot), one row
    per (name, estimate, (low, high)): whether two intervals overlap is seen at once."""
    label_w, value_w, row, top = 130, 150, 22, 24
    plot_w = width - label_w - value_w
    height = top + row * len(items) + 18
    ends = [v for _, point, (low, high) in items for v in (point, low, high)]
    low_end, high_end = (min(ends), max(ends)) if ends else (0.0, 1.0)
    pad = max((high_end - low_end) * 0.1, 0.005)
    low_end, high_end = low_end - pad, high_end + pad

    def x_at(value: float) -> float:
        return label_w + plot_w * (value - low_end) / (high_end - low_end)

    parts = [f'<text x="0" y="13" {FONT} font-weight="600">{escape(title)}</text>']
    for i, (name, point, (low, high)) in enumerate(items):
        y = top + i * row + row / 2
        text = f"{fmt.format(point)} [{fmt.format(low)}, {fmt.format(high)}]"
        parts.append(f'<text x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
                     f'{escape(name)}</text>')
        parts.append(f'<line class="interval" x1="{x_at(low):.1f}" x2="{x_at(high):.1f}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{LINE}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x_at(point):.1f}" cy="{y:.1f}" r="4" fill="{LINE}">'
                     f'<title>{escape(name)}: {escape(text)}</title></circle>')
        parts.append(f'<text x="{width - 2}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
                     f'{escape(text)}</text>')
    axis_y = top + row * len(items) + 2
    parts.append(f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{axis_y}" y2="{axis_y}" '
                 f'stroke="{GRID}"/>')
    for tick in (low_end + pad, high_end - pad):
        parts.append(f'<text x="{x_at(tick):.1f}" y="{axis_y + 13}" text-anchor="middle" '
                     f'{FONT}>{tick:.4g}</text>')
    return _svg(width, height, title, parts)


def _svg(width: float, height: float, title: str, parts: list[str]) -> str:
    """A chart's `parts` in an inline SVG of that size, titled for screen readers too."""
    label = escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{label}"><title>{label}</title>{"".join(parts)}</svg>')


def _data_section(card: ModelCard) -> str:
    inputs, target = card.inputs, card.inputs.schema.target
    data = inputs.data
    table_rows = len(inputs.refit_rows) + len(inputs.holdout)
    everything = pd.concat([inputs.refit_rows[target], inputs.holdout[target]])
    where = " (under ONEBOX_HOME)" if data.under_home else ""
    sources = [[f"base table <code>{escape(data.shown_base_path)}</code>{where}",
                f"{data.base_rows:,}", "no time column"]]
    if data.production_rows:
        period = f"{_when(data.production_first_at)} to {_when(data.production_last_at)}"
        sources.append(["labelled production rows (trusted feedback)",
                        f"{data.production_rows:,}", escape(period)])
    else:
        sources.append(["labelled production rows", "0", "none yet"])
    page = TASK_PAGES[type(card.holdout)]
    column, meaning, of = page.target_column, page.target_meaning, page.target_cell
    split = [
        ["refit (train + validation)", f"{len(inputs.refit_rows):,}",
         of(inputs.refit_rows[target], card.holdout)],
        ["holdout (kept out of search and refit)", f"{len(inputs.holdout):,}",
         of(inputs.holdout[target], card.holdout)],
        ["all", f"{table_rows:,}", of(everything, card.holdout)],
    ]
    return (
        "<h2>Data</h2>"
        + _table(["source", "rows", "period"], sources, numeric=[1])
        + f"<p>How the table was split (target <code>{escape(target)}</code>; "
          f"{meaning}):</p>"
        + _table(["part", "rows", column], split, numeric=[1, 2])
    )


def _positive_rate(values: pd.Series, holdout: Holdout) -> str:
    return _pct(float(values.mean()) if len(values) else None)


def _mean_value(values: pd.Series, holdout: Holdout) -> str:
    if not len(values):
        return "n/a"
    unit = getattr(holdout, "unit", "")
    return escape(f"{float(values.mean()):.4g}{' ' + unit if unit else ''}")


def unit_curve_chart(points: Sequence[tuple[float, float]], *, title: str, x_label: str,
                     y_label: str, css: str, baseline: tuple[float, float, float, float],
                     baseline_label: str, marked: tuple[float, float] | None = None,
                     marked_label: str = "", size: int = 300) -> str:
    """A curve on the unit square as one line (no dot per point: a ROC curve has hundreds),
    a dashed `baseline` (x1, y1, x2, y2: what a model without skill draws) and the point
    `marked` (the decision threshold's) as a dot."""
    left, bottom, top, right = 50, 34, 22, 10
    plot = size - left - right
    height = top + plot + bottom

    def x_at(x: float) -> float:
        return left + plot * min(max(x, 0.0), 1.0)

    def y_at(y: float) -> float:
        return top + plot * (1 - min(max(y, 0.0), 1.0))

    parts = [f'<text x="{left}" y="13" {FONT} font-weight="600">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" '
             f'stroke="{GRID}"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 4}" y="{y_at(tick) + 4:.1f}" text-anchor="end" '
                     f"{FONT}>{tick:g}</text>")
        parts.append(f'<text x="{x_at(tick):.1f}" y="{top + plot + 13}" text-anchor="middle" '
                     f"{FONT}>{tick:g}</text>")
    x1, y1, x2, y2 = baseline
    parts.append(f'<line class="baseline" x1="{x_at(x1):.1f}" y1="{y_at(y1):.1f}" '
                 f'x2="{x_at(x2):.1f}" y2="{y_at(y2):.1f}" stroke="#999" '
                 f'stroke-dasharray="4 3"><title>{escape(baseline_label)}</title></line>')
    line = " ".join(f"{x_at(x):.1f},{y_at(y):.1f}" for x, y in points)
    parts.append(f'<polyline class="{escape(css)}" fill="none" stroke="{LINE}" '
                 f'stroke-width="1.5" points="{line}"/>')
    if marked is not None:
        parts.append(f'<circle class="threshold-point" cx="{x_at(marked[0]):.1f}" '
                     f'cy="{y_at(marked[1]):.1f}" r="4.5" fill="#b00020">'
                     f"<title>{escape(marked_label)}</title></circle>")
    parts.append(f'<text x="{left + plot / 2}" y="{height - 4}" text-anchor="middle" '
                 f"{FONT}>{escape(x_label)}</text>")
    parts.append(f'<text x="10" y="{top + plot / 2}" text-anchor="middle" {FONT} '
                 f'transform="rotate(-90 10 {top + plot / 2})">{escape(y_label)}</text>')
    return _svg(size, height, title, parts)


def _curves(holdout: BinaryHoldout) -> str:
    """The ROC and precision-recall curves on the holdout, the threshold marked on both."""
    curves: Curves | None = holdout.curves
    if curves is None:
        return ("<h3>ROC and precision-recall curves</h3><p>The holdout holds one class "
                "only: there are no curves to draw.</p>")
    confusion = holdout.confusion
    at = f"the decision threshold {holdout.threshold:.2f}"
    roc_marked = None
    if confusion.false_positive_rate is not None and confusion.recall is not None:
        roc_marked = (confusion.false_positive_rate, confusion.recall)
    pr_marked = None
    if confusion.precision is not None and confusion.recall is not None:
        pr_marked = (confusion.recall, confusion.precision)
    roc = unit_curve_chart(
        curves.roc, title=f"ROC curve (AUC {curves.auc:.4f})",
        x_label="false positive rate", y_label="true positive rate (recall)", css="roc",
        baseline=(0.0, 0.0, 1.0, 1.0), baseline_label="a coin: AUC 0.5",
        marked=roc_marked, marked_label=at)
    pr = unit_curve_chart(
        curves.pr,
        title=f"Precision-recall (AP {curves.average_precision:.4f})",
        x_label="recall", y_label="precision", css="pr",
        baseline=(0.0, curves.positive_rate, 1.0, curves.positive_rate),
        baseline_label=f"no skill: the positive rate {curves.positive_rate:.1%}",
        marked=pr_marked, marked_label=at)
    return (
        "<h3>ROC and precision-recall curves on the holdout</h3>"
        f'<div class="charts"><div>{roc}</div><div>{pr}</div></div>'
        f"<p>Each curve follows the threshold from 1 down to 0 over the holdout's "
        f"probabilities; the red dot is {at}. <strong>ROC</strong>: the share of the "
        "positive rows flagged (true positive rate) against the share of the negative rows "
        f"flagged (false positive rate); its area, the AUC <strong>{curves.auc:.4f}</strong>, "
        "is the chance that a random positive row scores above a random negative one (the "
        "dashed diagonal, a coin, is 0.5). <strong>Precision-recall</strong>: of the rows "
        "flagged, the share that were positive, against the share of the positives "
        "flagged; its area, the average precision (AP) "
        f"<strong>{curves.average_precision:.4f}</strong>, is the precision averaged over "
        "the recall each threshold adds (the dashed line, a model without skill, is the "
        f"holdout's positive rate, {curves.positive_rate:.1%}).</p>"
    )


def _threshold_rule(card: ModelCard, holdout: BinaryHoldout) -> str:
    """How the decision threshold was chosen, as core.task (fit_serving, best_f1_threshold)
    chooses it."""
    inputs = card.inputs
    if not holdout.threshold_chosen:
        return (f"<p>This version carries no threshold of its own: the default "
                f"<strong>{holdout.threshold:.2f}</strong> stands (a version trained before "
                "thresholds were chosen). A row is predicted positive when its probability "
                "is at or above it.</p>")
    rows = len(inputs.refit_rows)
    folds = inputs.cross_fit_folds
    scored = (f"each scored by a model fitted on the other {folds - 1} of {folds} folds"
              if folds else "each scored by a model fitted on the other folds")
    served = ("after the Platt scaling the version serves" if not holdout.calibration.is_identity
              else "as served (the model's own: Platt scaling was not applied)")
    return (f"<p>The decision threshold <strong>{holdout.threshold:.2f}</strong> is the one "
            "of 0.05, 0.06, …, 0.95 with the highest F1 (the harmonic mean of precision and "
            f"recall) on the out-of-fold probabilities of the {rows:,} refit rows ({scored}), "
            f"{served}; of equal F1s the lowest threshold wins. The holdout took no part in "
            "it. A row is predicted positive when its probability is at or above the "
            "threshold.</p>")


def _binary_performance(card: ModelCard, holdout: BinaryHoldout) -> str:
    confusion = holdout.confusion
    calibration_svg = curve_chart(
        [(b.mean_predicted, b.observed_rate) for b in holdout.bins],
        title="Calibration on the holdout", x_label="mean predicted probability",
        y_label="observed positive rate")
    calibration_rows = [[f"{b.low:.1f}–{b.high:.1f}", f"{b.rows:,}", f"{b.mean_predicted:.3f}",
                         f"{b.observed_rate:.3f}"] for b in holdout.bins]
    matrix = _table(
        ["", "predicted positive", "predicted negative"],
        [["actually positive", f"{confusion.true_positive:,}",
          f"{confusion.false_negative:,}"],
         ["actually negative", f"{confusion.false_positive:,}",
          f"{confusion.true_negative:,}"]],
        numeric=[1, 2])
    f1 = "n/a" if confusion.f1 is None else f"{confusion.f1:.3f}"
    return (
        _headline_sentence(card)
        + _curves(holdout)
        + "<h3>Calibration</h3>"
        + f'<div class="charts"><div>{calibration_svg}</div><div>'
        + _table(["predicted bin", "rows", "mean predicted", "observed rate"],
                 calibration_rows, numeric=[1, 2, 3])
        + "</div></div>"
        + _calibration_note(holdout)
        + "<h3>How the decision threshold was chosen</h3>"
        + _threshold_rule(card, holdout)
        + f"<h3>Confusion matrix at the decision threshold {confusion.threshold:.2f}</h3>"
        + matrix
        + f"<p>Precision <strong>{_pct(confusion.precision)}</strong> (of the rows flagged, "
          f"the share that were positive); recall <strong>{_pct(confusion.recall)}</strong> "
          f"(of the positive rows, the share flagged); F1 <strong>{f1}</strong>. "
          f"{confusion.rows:,} holdout rows.</p>"
    )


def _calibration_note(holdout: BinaryHoldout) -> str:
    calibration = holdout.calibration
    if calibration.is_identity:
        how = "The probabilities are the model's own (no calibration recorded)."
    else:
        how = (f"Platt scaling (log-odds &times; {calibration.slope:.3f} "
               f"{'+' if calibration.intercept >= 0 else '&minus;'} "
               f"{abs(calibration.intercept):.3f}) fitted on {calibration.fitted_rows:,} "
               "out-of-fold predictions of the training rows, never on the holdout; before "
               f"it the error was {holdout.ece_uncalibrated:.4f}.")
    return (f"<p>Expected calibration error <strong>{holdout.ece:.4f}</strong> "
            '<span class="note">(row-weighted |observed &minus; predicted| over 10 '
            "equal-count bins of the holdout; the monitoring estimates quality from these "
            f"probabilities, so it is only as good as they are)</span>. {how}</p>")


def _regression_performance(card: ModelCard, holdout: RegressionHoldout) -> str:
    unit = f" ({holdout.unit})" if holdout.unit else ""
    target = card.inputs.schema.target
    scatter = scatter_chart(holdout.points, title="Predicted against actual on the holdout",
                            x_label=f"actual {target}{unit}",
                            y_label=f"predicted {target}{unit}")
    figures = [[escape(label), _score(holdout.figures[name], name),
                _interval(holdout.intervals[name], metric=name)]
               for name, label in (("rmse", f"RMSE{unit}"), ("mae", f"MAE{unit}"),
                                   ("r2", "R²"))]
    shown = len(holdout.points)
    rows = len(card.inputs.holdout)
    sample = (f"all {rows:,} holdout rows" if shown == rows
              else f"a seeded sample of {shown:,} of the {rows:,} holdout rows")
    by_feature: dict[str, list[list[str]]] = {}
    for s in holdout.segments:
        by_feature.setdefault(s.feature, []).append(
            [escape(s.segment), f"{s.rows:,}", f"{s.mean_actual:.4g}", f"{s.mean_residual:+.4g}",
             f"{s.rmse:.4g}"])
    segments = "".join(
        f"<h3>By <code>{escape(feature)}</code></h3>"
        + _table(["segment", "rows", "mean actual", "mean residual", "RMSE"], rows_,
                 numeric=[1, 2, 3, 4])
        for feature, rows_ in by_feature.items())
    return (
        _headline_sentence(card)
        + _table(["", "value", f"{int(CONFIDENCE * 100)}% interval"], figures, numeric=[1, 2])
        + _answer_interval(holdout)
        + _estimated_error(holdout)
        + f'<div class="charts"><div>{scatter}</div></div>'
        + f'<p class="note">The dashed line is a perfect prediction; {sample} are drawn.</p>'
        + "<h3>Residuals by segment</h3>"
        + f"<p>The holdout rows split by each of the {len(by_feature)} features the model "
          f"leans on most: by value (a feature of at most {SEGMENT_BY_VALUE_MAX} values) or "
          "by quartile. A residual is predicted − actual: a positive mean over-predicts that "
          "segment, a negative one under-predicts it; a segment whose RMSE stands out is "
          "where the model is least sure.</p>"
        + segments
    )


def _answer_interval(holdout: RegressionHoldout) -> str:
    """How the interval every answer carries did on the holdout."""
    interval = holdout.interval
    if interval is None:
        return ("<p>This version serves no interval (trained before intervals were; a "
                "retrain adds one).</p>")
    unit = f" {escape(holdout.unit)}" if holdout.unit else ""
    return (f"<h3>The interval on every answer</h3><p>Each answer carries a "
            f"{interval['level']:.0%} interval ({escape(interval['method'])}, fitted on "
            "the training rows' out-of-fold residuals, never on this holdout). On the "
            f"holdout it held the real value for <strong>{interval['coverage']:.1%}</strong> "
            f"of the rows (the level is {interval['level']:.0%}), with a mean width of "
            f"<strong>{interval['width']:,.4g}{unit}</strong>.</p>")


def _estimated_error(holdout: RegressionHoldout) -> str:
    """What the monitoring's label-free estimate (DLE) said of the holdout, beside the truth."""
    estimated = holdout.estimated_error
    if not estimated:
        return ""
    unit = f" {escape(holdout.unit)}" if holdout.unit else ""
    return ("<h3>Its error before the labels</h3><p>The version carries models of its own "
            "error (Direct Loss Estimation, fitted on the training rows' out-of-fold "
            "residuals): the drift exporter estimates each window's RMSE and MAE with them "
            "as soon as it is served, weeks before the real values come back. On this "
            "holdout, without its labels, they estimated an RMSE of "
            f"<strong>{estimated['rmse']:,.4g}{unit}</strong> (measured: "
            f"{holdout.figures['rmse']:,.4g}) and an MAE of "
            f"<strong>{estimated['mae']:,.4g}{unit}</strong> (measured: "
            f"{holdout.figures['mae']:,.4g}). They see the inputs move, never a change in how "
            "the target follows them.</p>")


def _headline_sentence(card: ModelCard) -> str:
    evidence = card.evidence
    metric = evidence.metric.name
    return (f"<p>{evidence.metric.label} <strong>{_score(evidence.candidate, metric)}</strong>, "
            f"{int(CONFIDENCE * 100)}% confidence interval "
            f"<strong>{_interval(evidence.candidate_ci, metric=metric)}</strong> "
            f'<span class="note">(percentile bootstrap over the {len(card.inputs.holdout):,} '
            f"holdout rows, {BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED})</span></p>")


def _performance_section(card: ModelCard) -> str:
    return ("<h2>Holdout performance</h2>"
            + TASK_PAGES[type(card.holdout)].performance(card, card.holdout))


def _importance_section(card: ModelCard) -> str:
    shown = card.importance[:TOP_FEATURES]
    unit = TASK_PAGES[type(card.holdout)].importance_unit(card)
    chart = bar_chart(shown, title=f"Mean |SHAP contribution| on the holdout ({unit})",
                      fmt="{:.3g}", width=460)
    holdout_rows = len(card.inputs.holdout)
    rows = (f"the {holdout_rows:,} holdout rows" if holdout_rows <= SHAP_MAX_ROWS else
            f"a seeded sample of {SHAP_MAX_ROWS:,} of the {holdout_rows:,} holdout rows")
    return (
        "<h2>Most important features</h2>"
        f"<p>{len(shown)} of {len(card.importance)} features, by the mean absolute "
        f"contribution (in {escape(unit)}) XGBoost's TreeSHAP gives each on {rows}; a one-hot "
        "encoded feature's columns are summed.</p>"
        f"<div>{chart}</div>"
    )


def _gate_section(card: ModelCard) -> str:
    decision, evidence = card.inputs.decision, card.evidence
    metric, label = evidence.metric.name, evidence.metric.label
    verdict = "promoted" if decision.promoted else "rejected"
    head = (f'<p>Decision: <strong class="{verdict}">{verdict}</strong>: '
            f"{escape(decision.reason)}.</p>")
    if decision.champion_version is None or evidence.champion_ci is None:
        return ("<h2>Promotion gate</h2>" + head
                + "<p>There was no champion to compare against.</p>")
    champion_label = f"champion v{decision.champion_version}"
    chart = interval_chart(
        [(f"candidate v{decision.candidate_version}", evidence.candidate,
          evidence.candidate_ci),
         (champion_label, float(decision.champion_score or 0.0), evidence.champion_ci)],
        title=f"Holdout {label} with 95% intervals", fmt=score_format(metric))
    better = "higher" if evidence.metric.greater_is_better else "lower"
    rows = [
        [f"candidate v{escape(decision.candidate_version)} {label}",
         _score(decision.candidate_score, metric), _interval(evidence.candidate_ci,
                                                             metric=metric)],
        [f"{escape(champion_label)} {label}", _score(decision.champion_score, metric),
         _interval(evidence.champion_ci, metric=metric)],
        ["difference (candidate − champion)",
         "n/a" if evidence.difference is None
         else score_format(metric, signed=True).format(evidence.difference),
         _interval(evidence.difference_ci, signed=True, metric=metric)],
        # The difference the gate asks for: at least +margin for an AUC, at most -margin
        # for an error.
        ["difference required",
         ("≥ " if evidence.metric.greater_is_better else "≤ ")
         + score_format(metric, signed=True).format(
             decision.margin if evidence.metric.greater_is_better else -decision.margin), ""],
    ]
    return (
        "<h2>Promotion gate</h2>" + head
        + f"<p>Both models scored on the same holdout rows ({label}: {better} is better); "
          "the difference's interval is a paired bootstrap (the same resamples for both). "
          "The gate decides on the difference itself; the interval shows how sure that "
          "is.</p>"
        + _table(["", "value", f"{int(CONFIDENCE * 100)}% interval"], rows, numeric=[1, 2])
        + f"<div>{chart}</div>"
    )


def _use_section(schema: Schema) -> str:
    """What the model is for and where it is not to be trusted, as the schema declares."""
    def listed(heading: str, key: str, items: tuple[str, ...]) -> str:
        if not items:
            return (f'<h3>{heading}</h3><p class="{key} none">None declared in the schema '
                    f"(<code>{key}:</code>).</p>")
        if len(items) == 1:
            return f'<h3>{heading}</h3><p class="{key}">{escape(items[0])}</p>'
        return (f'<h3>{heading}</h3><ul class="{key}">'
                + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>")

    if not schema.intended_use and not schema.limitations:
        return ("<h2>Intended use and limitations</h2>"
                '<p class="none">None were declared: the schema this version was trained '
                "with says nothing of what the model is for or where it is not to be "
                "trusted (a schema declares them in <code>intended_use:</code> and "
                "<code>limitations:</code>).</p>")
    return ("<h2>Intended use and limitations</h2>"
            '<p class="note">As declared in the schema this version was trained with.</p>'
            + listed("Intended use", "intended_use", schema.intended_use)
            + listed("Limitations", "limitations", schema.limitations))


# What each of the search's parameters does (XGBoost's names; orchestration.model's space).
PARAMETER_MEANINGS = {
    "n_estimators": "boosting rounds: the number of trees",
    "max_depth": "the deepest a tree may grow",
    "learning_rate": "how much each tree's answer counts (shrinkage)",
    "subsample": "the share of rows each tree is fitted on",
    "colsample_bytree": "the share of columns each tree may split on",
    "min_child_weight": "the least weight (hessian) a leaf may hold: higher is more cautious",
    "reg_lambda": "L2 penalty on the leaves' weights",
}


def _training_section(card: ModelCard) -> str:
    inputs = card.inputs
    run = f"<code>{escape(inputs.run_id)}</code>"
    if card.run_url is not None:
        run = (f'<a class="mlflow-run" href="{escape(card.run_url)}">{run}</a> '
               '<span class="note">(the run in MLflow: its parameters, metrics, '
               "artifacts and trials)</span>")
    version = (f'<a class="mlflow-version" href="{escape(card.version_url)}">'
               f"{escape(inputs.model_name)} v{escape(inputs.version)}</a> "
               '<span class="note">(the version in MLflow\'s registry: its aliases and '
               "tags)</span>")
    training = _table(["", ""], [
        ["run id", run],
        ["registered version", version],
        ["search + refit wall time", f"{inputs.training_seconds:.1f} s"],
        ["search trials", f"{inputs.trials}"],
        ["card written", escape(_when(card.created_at))],
    ])
    params = inputs.hyperparameters
    if params is None:
        hyper = "<p>The hyperparameters were not recorded with this card.</p>"
    else:
        rows = [[f"<code>{escape(name)}</code>", escape(str(params[name])),
                 escape(PARAMETER_MEANINGS.get(name, ""))] for name in sorted(params)]
        judged = escape(task_of(inputs.schema).search_metric.label)
        hyper = ("<p>The search's best trial, as logged on the run (<code>best.*</code>): "
                 f"the {inputs.trials} trials of the Optuna search were judged on the "
                 f"validation rows' {judged}, and the final model was refitted with these on "
                 "train + validation.</p>"
                 + _table(["parameter", "value", "what it sets"], rows, numeric=[1])
                 .replace("<table>", '<table id="hyperparameters">', 1))
    return ("<h2>Training</h2>" + training + "<h3>Hyperparameters</h3>" + hyper)


def _allowed(feature: Feature) -> str:
    described = feature.to_dict()
    if "values" in described:
        return ", ".join(described["values"])
    if "levels" in described:
        return "ordered: " + ", ".join(f"{i} = {level}"
                                       for i, level in enumerate(described["levels"]))
    low, high = described.get("min"), described.get("max")
    if low is None and high is None:
        return "any number"
    return f"{'−∞' if low is None else f'{low:g}'} to {'∞' if high is None else f'{high:g}'}"


def _schema_section(schema: Schema) -> str:
    rows = [[f"<code>{escape(f['name'])}</code>", escape(f["kind"]), escape(_allowed(feature)),
             "yes" if f["nullable"] else "no", escape(f.get("description", ""))]
            for feature in schema.features for f in [feature.to_dict()]]
    return (
        "<h2>Schema</h2>"
        f"<p>{escape(schema.name)}: {escape(schema.description)} "
        f"Target <code>{escape(schema.target)}</code>.</p>"
        + _table(["feature", "kind", "allowed values / range", "nullable", "description"],
                 rows)
    )


@dataclass(frozen=True)
class TaskPage:
    """What the page shows differently for a task's holdout section (card.HOLDOUT_SECTIONS
    chose the section): the split table's target column (header, meaning, cell), the
    holdout performance, the unit of the importance chart, and its headline figure."""

    target_column: str
    target_meaning: str
    target_cell: Callable[[pd.Series, Holdout], str]
    performance: Callable[[ModelCard, Any], str]
    importance_unit: Callable[[ModelCard], str]
    headline: Callable[[Any], str]


TASK_PAGES: dict[type, TaskPage] = {
    BinaryHoldout: TaskPage(
        "positive rate", "positive rate = share of rows whose label is 1", _positive_rate,
        _binary_performance, lambda card: "log-odds",
        lambda holdout: _figure(f"{holdout.threshold:.2f}", "decision threshold")),
    RegressionHoldout: TaskPage(
        "mean target", "the mean of the target in each part", _mean_value,
        _regression_performance,
        lambda card: card.holdout.unit or card.inputs.schema.target,
        lambda holdout: _figure(f"{holdout.figures['r2']:.3f}", "holdout R²")),
}


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page."""
    inputs, decision, evidence = card.inputs, card.inputs.decision, card.evidence
    metric = evidence.metric.name
    verdict = "promoted" if decision.promoted else "rejected"
    title = f"{inputs.model_name} v{inputs.version}: model card"
    headline = "".join([
        _figure(_score(evidence.candidate, metric), f"holdout {evidence.metric.label}"),
        _figure(_interval(evidence.candidate_ci, metric=metric),
                f"{int(CONFIDENCE * 100)}% interval"),
        _figure(verdict, "promotion gate", verdict),
        TASK_PAGES[type(card.holdout)].headline(card.holdout),
    ])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{HEADER_CSS}{STYLE}</style></head>
<body>
{header_html()}
<p class="note"><a href="../index.html">All reports</a></p>
<h1>{escape(inputs.model_name)} v{escape(inputs.version)}</h1>
<p class="note">Model card: {escape(inputs.schema.description)}</p>
<div class="headline">{headline}</div>
{_use_section(inputs.schema)}
{_data_section(card)}
{_performance_section(card)}
{_importance_section(card)}
{_gate_section(card)}
{_training_section(card)}
{_schema_section(inputs.schema)}
</body></html>
"""
