"""A model card per registered version: one HTML page, readable offline.

Where it lives (the reports index links these):
    REPORTS_DIR/models/<model name>-v<version>.html  the card
    REPORTS_DIR/models/<model name>-v<version>.json  its headline figures, for the index

The train flow writes it after the gate has decided, whatever it decided: the data the
version saw, its holdout AUC with a bootstrap confidence interval, calibration, the
confusion matrix at its decision threshold, the features it leans on (XGBoost's own
TreeSHAP), the evidence the gate weighed against the champion, and the schema.  The
page carries its pictures as inline SVG (reporting.charts) and its style inline: no script,
nothing fetched, so it reads the same from nginx, from a file:// URL or from MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core import contributions
from core.calibration import Calibration, expected_calibration_error
from core.gate import GateDecision
from core.schema import Feature, Schema, model_frame
from core.task import task_of
from reporting.atomic import atomic_write_text
from reporting.charts import FONT, GRID, LINE, bar_chart, curve_chart

if TYPE_CHECKING:
    from mlflow import MlflowClient


CARDS_DIR = "models"
# nginx serves REPORTS_DIR under this path of the front door (gateway/nginx.conf).
FRONT_DOOR_REPORTS = "/reports"
# The MLflow model-version tag that points at the card, and the run artifact's name.
CARD_TAG = "onebox.model_card"
CARD_ARTIFACT = "model_card.html"

BOOTSTRAP_RESAMPLES = 1_000
# Fixed, so the same holdout and predictions always give the same interval.
BOOTSTRAP_SEED = 20_240_601
CONFIDENCE = 0.95
# The bootstrap holds one weight per (resample, holdout row); this many cells at a time
# keep it near 32 MB whatever the holdout's size.
_BOOTSTRAP_CELLS_PER_CHUNK = 4_000_000
CALIBRATION_BINS = 10
TOP_FEATURES = 12
# TreeSHAP costs grow with rows x trees (~0.7 ms a row for 350 trees of depth 5 here);
# past this many holdout rows a seeded sample of them gives the same ranking for less.
SHAP_MAX_ROWS = 1_000


def card_stem(model_name: str, version: str) -> str:
    return f"{model_name}-v{version}"


def card_path(reports_dir: Path, model_name: str, version: str) -> Path:
    return reports_dir / CARDS_DIR / f"{card_stem(model_name, version)}.html"


def card_summary_path(reports_dir: Path, model_name: str, version: str) -> Path:
    return reports_dir / CARDS_DIR / f"{card_stem(model_name, version)}.json"


def card_url(model_name: str, version: str) -> str:
    """The card's address under the front door (what MLflow links to)."""
    return f"{FRONT_DOOR_REPORTS}/{CARDS_DIR}/{card_stem(model_name, version)}.html"


# --- the statistics ------------------------------------------------------------------


def _resample_weights(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples as weights: how often each row was drawn, shape (chunk, rows).

    Weights rather than index arrays, so one sort of the scores serves every resample.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CELLS_PER_CHUNK // max(rows, 1))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        drawn = rng.integers(0, rows, size=(size, rows))
        # Offset each resample's draws into its own block of `rows`, so one bincount
        # counts them all.
        flat = (drawn + np.arange(size)[:, None] * rows).ravel()
        yield np.bincount(flat, minlength=size * rows).reshape(size, rows).astype(np.float64)


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The rank (Mann-Whitney) AUC of `scores` under each row of `weights`, ties counting
    half: the share of (positive, negative) pairs, weighted, the positive outranks.

    `weights` has shape (resamples, rows); the answer one AUC per resample (NaN where a
    resample drew no positive or no negative).
    """
    order = np.argsort(scores, kind="mergesort")
    ordered_scores = np.asarray(scores, dtype=np.float64)[order]
    positive = np.asarray(y_true)[order].astype(bool)
    ordered_weights = weights[:, order]
    # Rows with equal scores form one group: within it a pair is a tie.
    group_starts = np.flatnonzero(np.r_[True, ordered_scores[1:] != ordered_scores[:-1]])
    positive_w = np.add.reduceat(ordered_weights * positive, group_starts, axis=1)
    negative_w = np.add.reduceat(ordered_weights * ~positive, group_starts, axis=1)
    negatives_below = np.cumsum(negative_w, axis=1) - negative_w
    wins = (positive_w * (negatives_below + 0.5 * negative_w)).sum(axis=1)
    pairs = positive_w.sum(axis=1) * negative_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def rank_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The AUC of `scores` (equal to sklearn's roc_auc_score)."""
    return float(weighted_auc(y_true, scores, np.ones((1, len(scores))))[0])


def bootstrap_aucs(y_true: np.ndarray, *scores: np.ndarray,
                   resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """AUCs of each score vector over the same bootstrap resamples of the rows, shape
    (len(scores), resamples): the same resamples for all, so differences are paired."""
    y_true = np.asarray(y_true)
    out = [np.empty(0)] * len(scores)
    for weights in _resample_weights(len(y_true), resamples, seed):
        out = [np.concatenate([done, weighted_auc(y_true, np.asarray(s), weights)])
               for done, s in zip(out, scores, strict=True)]
    return np.vstack(out)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def auc_confidence_interval(y_true: np.ndarray, scores: np.ndarray, *,
                            resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                            confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A percentile bootstrap interval of the AUC over the rows (holdout rows resampled
    with replacement)."""
    [aucs] = bootstrap_aucs(y_true, scores, resamples=resamples, seed=seed)
    return _percentile_interval(aucs, confidence)


def auc_difference_interval(y_true: np.ndarray, scores: np.ndarray, baseline: np.ndarray, *,
                            resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                            confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A paired bootstrap interval of AUC(scores) - AUC(baseline) on the same rows: both
    are scored on each resample, so what the two models share cancels out."""
    aucs = bootstrap_aucs(y_true, scores, baseline, resamples=resamples, seed=seed)
    return _percentile_interval(aucs[0] - aucs[1], confidence)


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    rows: int
    mean_predicted: float
    observed_rate: float


def calibration_bins(y_true: np.ndarray, proba: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> list[CalibrationBin]:
    """Equal-width probability bins that hold rows: the mean prediction against the
    observed positive rate in each."""
    y_true, proba = np.asarray(y_true, dtype=np.float64), np.asarray(proba, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        if members.any():
            out.append(CalibrationBin(float(edges[b]), float(edges[b + 1]), int(members.sum()),
                                      float(proba[members].mean()),
                                      float(y_true[members].mean())))
    return out


@dataclass(frozen=True)
class Confusion:
    threshold: float
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int

    @property
    def rows(self) -> int:
        return (self.true_positive + self.false_positive + self.false_negative
                + self.true_negative)

    @property
    def precision(self) -> float | None:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        positives = self.true_positive + self.false_negative
        return self.true_positive / positives if positives else None


def confusion_at(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> Confusion:
    """Counts at the decision threshold, as the predictor decides (positive at >=)."""
    actual = np.asarray(y_true).astype(bool)
    flagged = np.asarray(proba) >= threshold
    return Confusion(threshold, int((flagged & actual).sum()), int((flagged & ~actual).sum()),
                     int((~flagged & actual).sum()), int((~flagged & ~actual).sum()))


def _column_owners(preprocessing: Any) -> list[str]:
    """The schema feature behind each column the fitted ColumnTransformer outputs (a
    one-hot encoded feature owns one column per category)."""
    owners: list[str] = [""] * sum(s.stop - s.start
                                   for s in preprocessing.output_indices_.values())
    for name, transformer, columns in preprocessing.transformers_:
        span = preprocessing.output_indices_[name]
        if span.stop == span.start:
            continue  # a dropped remainder
        if hasattr(transformer, "categories_"):
            dropped = getattr(transformer, "drop_idx_", None)
            named = [column for i, (column, categories) in
                     enumerate(zip(columns, transformer.categories_, strict=True))
                     for _ in range(len(categories) - (0 if dropped is None
                                                       or dropped[i] is None else 1))]
        else:
            named = list(columns)
        if len(named) != span.stop - span.start:
            raise ValueError(f"cannot map the {name!r} columns back to features")
        owners[span] = named
    return owners


def feature_importance(pipeline: Any, schema: Schema, frame: pd.DataFrame,
                       seed: int = BOOTSTRAP_SEED) -> list[tuple[str, float]]:
    """Mean |TreeSHAP contribution| (log-odds) of each schema feature on `frame`, largest
    first, from XGBoost's own `pred_contribs` (no shap package needed).

    A one-hot encoded feature's columns are summed per row before the absolute value:
    SHAP values add up, so that sum is the feature's contribution to that prediction.
    """
    if len(frame) > SHAP_MAX_ROWS:
        frame = frame.sample(n=SHAP_MAX_ROWS, random_state=seed)
    preprocessing = pipeline.named_steps["preprocessing"]
    classifier = pipeline.named_steps["classifier"]
    encoded = np.asarray(preprocessing.transform(model_frame(schema, frame)), dtype=np.float64)
    _, per_feature = contributions.by_feature(classifier.get_booster(), encoded,
                                              _column_owners(preprocessing),
                                              schema.feature_names)
    mean_abs = np.abs(per_feature).mean(axis=0)
    ranked = sorted(zip(schema.feature_names, mean_abs.tolist(), strict=True),
                    key=lambda item: -item[1])
    return [(str(name), float(value)) for name, value in ranked]


# --- the card ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    """Where the version's training table came from."""

    base_path: str
    base_rows: int
    production_rows: int = 0
    # When the labelled production rows were predicted (the base table has no time column).
    production_first_at: datetime | None = None
    production_last_at: datetime | None = None


@dataclass(frozen=True)
class CardInputs:
    """Everything the card is made from: the train flow hands these over after the gate."""

    model_name: str
    version: str
    run_id: str
    schema: Schema
    pipeline: Any  # the candidate's fitted sklearn Pipeline (preprocessing, XGBClassifier)
    threshold: float
    refit_rows: pd.DataFrame  # train + validation: what the final model was fitted on
    holdout: pd.DataFrame
    holdout_proba: np.ndarray
    decision: GateDecision
    champion_holdout_proba: np.ndarray | None
    data: TrainingData
    training_seconds: float
    trials: int
    # The Platt scaling holdout_proba went through (identity: a raw model's card).
    calibration: Calibration = Calibration()


@dataclass(frozen=True)
class ModelCard:
    inputs: CardInputs
    created_at: datetime
    holdout_auc: float
    holdout_auc_ci: tuple[float, float]
    champion_auc_ci: tuple[float, float] | None
    auc_difference: float | None
    auc_difference_ci: tuple[float, float] | None
    calibration: list[CalibrationBin]
    ece: float               # of the served (calibrated) probabilities, equal-count bins
    ece_uncalibrated: float  # of the pipeline's own probabilities
    confusion: Confusion
    importance: list[tuple[str, float]]

    @property
    def file_name(self) -> str:
        return f"{card_stem(self.inputs.model_name, self.inputs.version)}.html"

    @property
    def url(self) -> str:
        return card_url(self.inputs.model_name, self.inputs.version)


def build_card(inputs: CardInputs, now: datetime | None = None) -> ModelCard:
    """Compute the card's figures from the holdout predictions."""
    task_of(inputs.schema).check_model_card()
    y_holdout = inputs.holdout[inputs.schema.target].to_numpy()
    candidate = np.asarray(inputs.holdout_proba, dtype=np.float64)
    champion = inputs.champion_holdout_proba
    if champion is None:
        [candidate_aucs] = bootstrap_aucs(y_holdout, candidate)
        champion_ci = difference = difference_ci = None
    else:
        champion = np.asarray(champion, dtype=np.float64)
        candidate_aucs, champion_aucs = bootstrap_aucs(y_holdout, candidate, champion)
        champion_ci = _percentile_interval(champion_aucs, CONFIDENCE)
        difference = rank_auc(y_holdout, candidate) - rank_auc(y_holdout, champion)
        difference_ci = _percentile_interval(candidate_aucs - champion_aucs, CONFIDENCE)
    return ModelCard(
        inputs=inputs,
        created_at=now or datetime.now(UTC),
        holdout_auc=rank_auc(y_holdout, candidate),
        holdout_auc_ci=_percentile_interval(candidate_aucs, CONFIDENCE),
        champion_auc_ci=champion_ci,
        auc_difference=difference,
        auc_difference_ci=difference_ci,
        calibration=calibration_bins(y_holdout, candidate),
        ece=expected_calibration_error(y_holdout, candidate),
        ece_uncalibrated=expected_calibration_error(y_holdout, inputs.pipeline.predict_proba(
            model_frame(inputs.schema, inputs.holdout))[:, 1]),
        confusion=confusion_at(y_holdout, candidate, inputs.threshold),
        importance=feature_importance(inputs.pipeline, inputs.schema, inputs.holdout),
    )


def summary(card: ModelCard) -> dict[str, Any]:
    """The card's headline figures (the JSON beside it, read by the reports index)."""
    inputs, decision = card.inputs, card.inputs.decision
    return {
        "model_name": inputs.model_name,
        "version": inputs.version,
        "created_at": card.created_at.astimezone(UTC).isoformat(timespec="seconds"),
        "holdout_auc": card.holdout_auc,
        "holdout_auc_ci": list(card.holdout_auc_ci),
        "holdout_rows": len(inputs.holdout),
        "threshold": inputs.threshold,
        "ece": card.ece,
        "ece_uncalibrated": card.ece_uncalibrated,
        "calibration": {"method": inputs.calibration.method,
                        "slope": inputs.calibration.slope,
                        "intercept": inputs.calibration.intercept,
                        "fitted_rows": inputs.calibration.fitted_rows},
        "gate_decision": "promoted" if decision.promoted else "rejected",
        "gate_reason": decision.reason,
        "margin": decision.margin,
        "champion_version": decision.champion_version,
        "champion_auc": decision.champion_score,
        "auc_difference_ci": (None if card.auc_difference_ci is None
                              else list(card.auc_difference_ci)),
        "confusion": {"threshold": card.confusion.threshold,
                      "true_positive": card.confusion.true_positive,
                      "false_positive": card.confusion.false_positive,
                      "false_negative": card.confusion.false_negative,
                      "true_negative": card.confusion.true_negative,
                      "precision": card.confusion.precision,
                      "recall": card.confusion.recall},
        "feature_importance": [{"feature": name, "mean_abs_shap": value}
                               for name, value in card.importance],
        "training_seconds": inputs.training_seconds,
        "trials": inputs.trials,
        "run_id": inputs.run_id,
        "card": card.file_name,
        "url": card.url,
    }


# --- the page ------------------------------------------------------------------------

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
"""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _interval(ci: tuple[float, float] | None, signed: bool = False) -> str:
    if ci is None:
        return "n/a"
    fmt = "{:+.4f}" if signed else "{:.4f}"
    return f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the prediction log stores UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _positive_rate(frame: pd.DataFrame, target: str) -> float | None:
    return float(frame[target].mean()) if len(frame) else None


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
                   width: int = 420) -> str:
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
        text = f"{point:.4f} [{low:.4f}, {high:.4f}]"
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
                     f'{FONT}>{tick:.3f}</text>')
    label = escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{label}"><title>{label}</title>{"".join(parts)}</svg>')


def _data_section(card: ModelCard) -> str:
    inputs, target = card.inputs, card.inputs.schema.target
    data = inputs.data
    table_rows = len(inputs.refit_rows) + len(inputs.holdout)
    everything = pd.concat([inputs.refit_rows[target], inputs.holdout[target]])
    sources = [[f"base table <code>{escape(data.base_path)}</code>", f"{data.base_rows:,}",
                "no time column"]]
    if data.production_rows:
        period = f"{_when(data.production_first_at)} to {_when(data.production_last_at)}"
        sources.append(["labelled production rows (trusted feedback)",
                        f"{data.production_rows:,}", escape(period)])
    else:
        sources.append(["labelled production rows", "0", "none yet"])
    split = [
        ["refit (train + validation)", f"{len(inputs.refit_rows):,}",
         _pct(_positive_rate(inputs.refit_rows, target))],
        ["holdout (kept out of search and refit)", f"{len(inputs.holdout):,}",
         _pct(_positive_rate(inputs.holdout, target))],
        ["all", f"{table_rows:,}", _pct(float(everything.mean()) if len(everything) else None)],
    ]
    return (
        "<h2>Data</h2>"
        + _table(["source", "rows", "period"], sources, numeric=[1])
        + f"<p>How the table was split (label <code>{escape(target)}</code>; positive rate = "
          "share of rows whose label is 1):</p>"
        + _table(["part", "rows", "positive rate"], split, numeric=[1, 2])
    )


def _performance_section(card: ModelCard) -> str:
    confusion = card.confusion
    calibration_svg = curve_chart(
        [(b.mean_predicted, b.observed_rate) for b in card.calibration],
        title="Calibration on the holdout", x_label="mean predicted probability",
        y_label="observed positive rate")
    calibration_rows = [[f"{b.low:.1f}–{b.high:.1f}", f"{b.rows:,}", f"{b.mean_predicted:.3f}",
                         f"{b.observed_rate:.3f}"] for b in card.calibration]
    matrix = _table(
        ["", "predicted positive", "predicted negative"],
        [["actually positive", f"{confusion.true_positive:,}",
          f"{confusion.false_negative:,}"],
         ["actually negative", f"{confusion.false_positive:,}",
          f"{confusion.true_negative:,}"]],
        numeric=[1, 2])
    return (
        "<h2>Holdout performance</h2>"
        f"<p>AUC <strong>{_auc(card.holdout_auc)}</strong>, "
        f"{int(CONFIDENCE * 100)}% confidence interval "
        f"<strong>{_interval(card.holdout_auc_ci)}</strong> "
        f'<span class="note">(percentile bootstrap over the {len(card.inputs.holdout):,} '
        f"holdout rows, {BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED})</span></p>"
        f'<div class="charts"><div>{calibration_svg}</div><div>'
        + _table(["predicted bin", "rows", "mean predicted", "observed rate"],
                 calibration_rows, numeric=[1, 2, 3])
        + "</div></div>"
        + _calibration_note(card)
        + f"<h3>Confusion matrix at the decision threshold {confusion.threshold:.2f}</h3>"
        + matrix
        + f"<p>Precision <strong>{_pct(confusion.precision)}</strong> (of the rows flagged, "
          f"the share that were positive); recall <strong>{_pct(confusion.recall)}</strong> "
          f"(of the positive rows, the share flagged). {confusion.rows:,} holdout rows.</p>"
    )


def _calibration_note(card: ModelCard) -> str:
    calibration = card.inputs.calibration
    if calibration.is_identity:
        how = "The probabilities are the model's own (no calibration recorded)."
    else:
        how = (f"Platt scaling (log-odds &times; {calibration.slope:.3f} "
               f"{'+' if calibration.intercept >= 0 else '&minus;'} "
               f"{abs(calibration.intercept):.3f}) fitted on {calibration.fitted_rows:,} "
               "out-of-fold predictions of the training rows, never on the holdout; before "
               f"it the error was {card.ece_uncalibrated:.4f}.")
    return (f"<p>Expected calibration error <strong>{card.ece:.4f}</strong> "
            '<span class="note">(row-weighted |observed &minus; predicted| over 10 '
            "equal-count bins of the holdout; the monitoring estimates quality from these "
            f"probabilities, so it is only as good as they are)</span>. {how}</p>")


def _importance_section(card: ModelCard) -> str:
    shown = card.importance[:TOP_FEATURES]
    chart = bar_chart(shown, title="Mean |SHAP contribution| on the holdout (log-odds)",
                      fmt="{:.3f}", width=460)
    holdout_rows = len(card.inputs.holdout)
    rows = (f"the {holdout_rows:,} holdout rows" if holdout_rows <= SHAP_MAX_ROWS else
            f"a seeded sample of {SHAP_MAX_ROWS:,} of the {holdout_rows:,} holdout rows")
    return (
        "<h2>Most important features</h2>"
        f"<p>{len(shown)} of {len(card.importance)} features, by the mean absolute "
        f"contribution to the log-odds XGBoost's TreeSHAP gives each on {rows}; a one-hot "
        "encoded feature's columns are summed.</p>"
        f"<div>{chart}</div>"
    )


def _gate_section(card: ModelCard) -> str:
    decision = card.inputs.decision
    verdict = "promoted" if decision.promoted else "rejected"
    head = (f'<p>Decision: <strong class="{verdict}">{verdict}</strong>: '
            f"{escape(decision.reason)}.</p>")
    if decision.champion_version is None or card.champion_auc_ci is None:
        return ("<h2>Promotion gate</h2>" + head
                + "<p>There was no champion to compare against.</p>")
    champion_label = f"champion v{decision.champion_version}"
    chart = interval_chart(
        [(f"candidate v{decision.candidate_version}", card.holdout_auc, card.holdout_auc_ci),
         (champion_label, float(decision.champion_score or 0.0), card.champion_auc_ci)],
        title="Holdout AUC with 95% intervals")
    rows = [
        [f"candidate v{escape(decision.candidate_version)} AUC", _auc(decision.candidate_score),
         _interval(card.holdout_auc_ci)],
        [f"{escape(champion_label)} AUC", _auc(decision.champion_score),
         _interval(card.champion_auc_ci)],
        ["difference (candidate − champion)",
         "n/a" if card.auc_difference is None else f"{card.auc_difference:+.4f}",
         _interval(card.auc_difference_ci, signed=True)],
        ["margin required", f"{decision.margin:+.4f}", ""],
    ]
    return (
        "<h2>Promotion gate</h2>" + head
        + "<p>Both models scored on the same holdout rows; the difference's interval is a "
          "paired bootstrap (the same resamples for both). The gate decides on the "
          "difference itself; the interval shows how sure that is.</p>"
        + _table(["", "value", f"{int(CONFIDENCE * 100)}% interval"], rows, numeric=[1, 2])
        + f"<div>{chart}</div>"
    )


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


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page."""
    inputs, decision = card.inputs, card.inputs.decision
    verdict = "promoted" if decision.promoted else "rejected"
    title = f"{inputs.model_name} v{inputs.version}: model card"
    headline = "".join([
        _figure(f"{_auc(card.holdout_auc)}", "holdout AUC"),
        _figure(_interval(card.holdout_auc_ci), f"{int(CONFIDENCE * 100)}% interval"),
        _figure(verdict, "promotion gate", verdict),
        _figure(f"{inputs.threshold:.2f}", "decision threshold"),
    ])
    training = _table(["", ""], [
        ["run id", f"<code>{escape(inputs.run_id)}</code>"],
        ["search + refit wall time", f"{inputs.training_seconds:.1f} s"],
        ["search trials", f"{inputs.trials}"],
        ["card written", escape(_when(card.created_at))],
    ])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<p class="note"><a href="../index.html">All reports</a></p>
<h1>{escape(inputs.model_name)} v{escape(inputs.version)}</h1>
<p class="note">Model card: {escape(inputs.schema.description)}</p>
<div class="headline">{headline}</div>
{_data_section(card)}
{_performance_section(card)}
{_importance_section(card)}
{_gate_section(card)}
<h2>Training</h2>
{training}
{_schema_section(inputs.schema)}
</body></html>
"""


# --- writing it ----------------------------------------------------------------------


@dataclass(frozen=True)
class CardFiles:
    html: Path
    summary: Path
    url: str


def write_card(card: ModelCard, page: str, reports_dir: Path) -> CardFiles:
    """Write the page, then its summary (an index lists a card once its summary exists, so
    it never links a page not there yet)."""
    inputs = card.inputs
    html_file = card_path(reports_dir, inputs.model_name, inputs.version)
    summary_file = card_summary_path(reports_dir, inputs.model_name, inputs.version)
    html_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(html_file, page)
    atomic_write_text(summary_file, json.dumps(summary(card), indent=2))
    return CardFiles(html_file, summary_file, card.url)


def log_on_run(client: MlflowClient, card: ModelCard, page: str) -> None:
    """Keep the page with the training run's artifacts (it travels with MLflow backups)."""
    client.log_text(card.inputs.run_id, page, CARD_ARTIFACT)


def link_from_version(client: MlflowClient, card: ModelCard) -> None:
    """Point the model version at the card under the front door: a one-line description
    (markdown, shown on the version's page) and a tag scripts can read."""
    inputs = card.inputs
    low, high = card.holdout_auc_ci
    description = (f"Holdout AUC {card.holdout_auc:.4f} ({int(CONFIDENCE * 100)}% CI "
                   f"{low:.4f}–{high:.4f}). Model card: [{card.url}]({card.url})")
    client.update_model_version(inputs.model_name, inputs.version, description=description)
    client.set_model_version_tag(inputs.model_name, inputs.version, CARD_TAG, card.url)


def publish(card: ModelCard, reports_dir: Path, client: MlflowClient) -> CardFiles:
    """Render the card once; log it on the run, write it to the reports folder, link it.

    The run artifact comes first: it needs no reports folder, so a version whose folder
    cannot be written still has its card in MLflow.  The version's link comes last, so
    it never points at a page that was not written.
    """
    page = render_html(card)
    log_on_run(client, card, page)
    files = write_card(card, page, reports_dir)
    link_from_version(client, card)
    return files
