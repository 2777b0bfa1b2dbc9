"""`python -m benchmarks.fidelity`: how soon the drift alarm sees each injected
drift, and how often it cries wolf on clean traffic.

A champion is trained in a temporary home (or loaded with `--home`) on a
10,000-row generated table (what `make data` writes), so its reference sample has
REFERENCE_ROWS rows as in production.  Monitoring depends only on core, so the
simulator and the trainer are run as the stack runs them: their commands
(`python -m simulation.demo_tables`, `python -m orchestration.train`).

Then, for each window size and each simulator scenario, streams of model-scored
traffic are replayed: a window of clean traffic, then drifted predictions
arriving; the alarm (monitoring.drift: data drift or live quality, computed as
the exporter computes it, without the HTML report) is recomputed
on the newest WINDOW predictions every WINDOW * `--step-fraction` predictions,
and the first crossing is reported as predictions (and minutes at
`--rate-per-minute`; the simulator itself has no rate, it sends as fast as the
predictor answers) since the drift began.  Labels are assumed to have arrived
for every prediction in the window by then: the best case for the quality arm,
as real churn labels come later and delay it by that much.

Requests the predictor refuses (a category outside the schema: 422) are never
logged, so they cannot drift the log; `new_card_category` is shown as logged
(refused rows dropped) and, for what the tests would do, as if accepted.

The joint scenarios (JOINT_SCENARIOS: a new segment inside the existing ranges, a
relation that changes shape) keep every feature's distribution: only the joint
test sees them, and their target is one window of the largest size.

The policy is the settings' (DriftPolicy.from_settings): the prediction counts
when PREDICTION_DRIFT_ALARM is on, its default, so the false alarms below include
it (the champion's reference predictions must then be out of sample, as the train
flow stores them).

Then clean traffic: `--clean-windows` windows per size through the production
path (false alarms counted), and the per-window alarm rate estimated over
`--rate-windows` clean windows and `--scenario-windows` per scenario with the
same p-values (`p_values`), for the chosen tests, the same without the joint
test, the features' own tests alone (what each marginal shows: the joint
scenarios' median p-value per column is printed), and the K-S + Evidently
chi-square alternative; then Evidently's defaults, to show why these tests.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from core import registry
from core.registry import PREDICTION_COLUMN, LoadedModel
from core.schema import RecordInvalid, Schema, model_frame
from core.settings import Settings
from monitoring.drift import (
    JOINT_COLUMN,
    ConditionalModel,
    DriftPolicy,
    DriftResult,
    compute_drift,
    drift_alarm,
    p_values,
)
from monitoring.quality import live_quality

TRAINING_ROWS = 10_000  # `make data`: enough rows for a REFERENCE_ROWS (5,000) reference
# Concept change last: the fast estimate (inputs only) leaves it out.
DRIFT_SCENARIOS = ("credit_limit_up", "older_customers", "economic_shift", "premium_cards",
                   "no_divorced", "young_transactors", "limit_income_by_tenure",
                   "new_card_category", "concept_change")
# Drifts of how the features go together, each feature's distribution unchanged.
JOINT_SCENARIOS = ("young_transactors", "limit_income_by_tenure")
AS_IF_ACCEPTED = "new_card_category (if accepted)"


# --- traffic ----------------------------------------------------------------------------

class Traffic:
    """Generated customers from the simulator's command, written under one folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def table(self, rows: int, seed: int, scenario: str) -> pd.DataFrame:
        out = self.folder / f"{scenario}-{rows}-{seed}.csv"
        if not out.exists():
            subprocess.run([sys.executable, "-m", "simulation.demo_tables", "--rows", str(rows),
                            "--seed", str(seed), "--scenario", scenario, "--out", str(out)],
                           check=True, stdout=subprocess.DEVNULL)
        # Keep category strings as written ("unknown" is a marital status, not a null).
        return pd.read_csv(out, keep_default_na=False, na_values=[""])


def records(frame: pd.DataFrame, schema: Schema) -> list[dict]:
    """Rows as the predictor receives them (JSON values, NaN as null)."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else
             (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame[schema.feature_names].astype(object).to_dict(orient="records")]


def refused(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Rows the predictor answers with a 422 (never scored, never logged)."""
    out = np.zeros(len(frame), dtype=bool)
    for i, record in enumerate(records(frame, schema)):
        try:
            schema.validate_record(record)
        except RecordInvalid:
            out[i] = True
    return out


def scored(model: LoadedModel, frame: pd.DataFrame, *,
           drop_refused: bool = True) -> tuple[pd.DataFrame, int]:
    """Generated traffic as the prediction log holds it, labelled; and how many were refused."""
    schema = model.schema
    refused_rows = 0
    if drop_refused:
        mask = refused(frame, schema)
        refused_rows = int(mask.sum())
        frame = frame[~mask]
    frame = frame.reset_index(drop=True)
    probability = model.predict_proba(model_frame(schema, frame))
    frame[PREDICTION_COLUMN] = probability
    frame["probability"] = probability
    frame["decision"] = (probability >= model.threshold).astype(int)
    frame["actual"] = frame[schema.target]
    return frame, refused_rows


def windows_of(frame: pd.DataFrame, window: int) -> list[pd.DataFrame]:
    """Consecutive, disjoint windows: the rows are independent draws."""
    return [frame.iloc[i:i + window] for i in range(0, len(frame) - window + 1, window)]


# --- streams: how soon the alarm rises ----------------------------------------------------

@dataclass(frozen=True)
class StreamOutcome:
    detected_after: int | None   # drifted predictions logged when the alarm first rose
    via: str                     # what raised it: features, relations, joint, prediction,
                                 # quality
    features: tuple[str, ...]
    share: float
    refused: int                 # drifted requests refused by validation (not logged)
    computations: int


def first_alarm(model: LoadedModel, policy: DriftPolicy, reference: pd.DataFrame,
                clean: pd.DataFrame, drifted: pd.DataFrame, *, step: int,
                drop_refused: bool = True) -> StreamOutcome:
    """Replay a window of clean traffic then the drifted traffic; the first alarm."""
    window = len(clean)
    clean, _ = scored(model, clean)
    drifted, refused_rows = scored(model, drifted, drop_refused=drop_refused)
    stream = pd.concat([clean, drifted], ignore_index=True)
    computations = 0
    for arrived in range(step, len(drifted) + 1, step):
        current = stream.iloc[arrived:arrived + window]  # the newest `window` predictions
        # The exporter's path: no HTML report.
        drift = compute_drift(reference, current, model.schema, policy, report=False)
        alarm = drift_alarm(drift, live_quality(current, model.task), policy, model.task,
                            {})
        computations += 1
        if alarm.detected:
            return StreamOutcome(arrived, "+".join(raised_by(drift, alarm.quality_degraded)),
                                 tuple(drift.drifted_features + drift.drifted_relations),
                                 drift.share, refused_rows, computations)
    return StreamOutcome(None, "", (), 0.0, refused_rows, computations)


def raised_by(drift: DriftResult, quality_degraded: bool) -> list[str]:
    """Which kinds of test failed: features, relations, joint, prediction, quality."""
    relations = any(c.drifted for c in drift.conditional.values())
    return [name for name, hit in (("features", bool(drift.drifted_features)),
                                   ("relations", relations),
                                   ("joint", drift.joint_drifted),
                                   ("prediction", drift.prediction_alarm
                                    and drift.prediction_drifted),
                                   ("quality", quality_degraded)) if hit]


# --- clean traffic: how often it cries wolf ------------------------------------------------

def clean_alarms(model: LoadedModel, policy: DriftPolicy, reference: pd.DataFrame,
                 windows: list[pd.DataFrame]) -> tuple[list[str], list[float]]:
    """The production path on clean windows: one line per false alarm, and the
    prediction's p-value in each window (reported whether or not it counts)."""
    alarms, prediction_p = [], []
    for i, window in enumerate(windows):
        current, _ = scored(model, window)
        drift = compute_drift(reference, current, model.schema, policy, report=False)
        alarm = drift_alarm(drift, live_quality(current, model.task), policy, model.task,
                            {})
        if alarm.detected:
            alarms.append(f"window {i}: {alarm.reason}")
        if drift.prediction is not None:
            prediction_p.append(drift.prediction.score)
    return alarms, prediction_p


def _evidently_one_sample_chi_square(reference: pd.Series, current: pd.Series) -> float:
    """Evidently's `chisquare`/`z`: the reference taken as the truth, nothing pooled."""
    from scipy.stats import chisquare

    reference, current = reference.dropna(), current.dropna()
    keys = sorted(set(reference) | set(current), key=str)
    ref_counts, cur_counts = reference.value_counts(), current.value_counts()
    scale = len(current) / len(reference)
    expected = [ref_counts.get(k, 0) * scale for k in keys]
    observed = [cur_counts.get(k, 0) for k in keys]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = float(chisquare(observed, expected).pvalue)
    return 0.0 if np.isnan(p) else p


def ks_p_values(reference: pd.DataFrame, current: pd.DataFrame, schema: Schema,
                policy: DriftPolicy) -> dict[str, float]:
    """The alternative: K-S for numbers, Evidently's chi-square for categories."""
    from scipy.stats import ks_2samp

    out = {}
    for name in [*schema.feature_names, *([PREDICTION_COLUMN] if policy.prediction_alarm
                                          else [])]:
        if name in schema.categorical_features:
            out[name] = _evidently_one_sample_chi_square(reference[name], current[name])
        else:
            out[name] = float(ks_2samp(reference[name].dropna().astype(float),
                                       current[name].dropna().astype(float)).pvalue)
    return out


def fast_rates(model: LoadedModel, policy: DriftPolicy, reference: pd.DataFrame,
               tables: dict[str, pd.DataFrame], window: int
               ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Share of whole windows that raise the data-drift alarm, per scenario, per test set;
    and the median p-value of each column per scenario.

    The test sets: the chosen tests ("chosen"), the same without the joint test (the
    alarm before it), the features' own tests alone (what the marginals see), and K-S
    with Evidently's chi-square; each with its own Bonferroni threshold (the false-alarm
    rate over its columns).  Labels are not used (quality is covered by the streams).
    """
    # The conditional fits depend on the reference only: fitted once, not per window.
    chosen = functools.partial(p_values, policy=policy, conditional=ConditionalModel.fit(
        reference, model.schema))
    ks = functools.partial(ks_p_values, policy=policy)
    features = set(model.schema.feature_names)
    subsets: dict[str, Callable[[str], bool]] = {
        "chosen": lambda column: True,
        "chosen without joint": lambda column: column != JOINT_COLUMN,
        "features' own tests": lambda column: column in features,
    }
    rates: dict[str, dict[str, float]] = {name: {} for name in [*subsets, "K-S"]}
    medians: dict[str, dict[str, float]] = {}
    for scenario, table in tables.items():
        stream, _ = scored(model, table, drop_refused=scenario != AS_IF_ACCEPTED)
        windows = windows_of(stream, window)
        found = [chosen(reference, w, model.schema) for w in windows]
        for name, keep in subsets.items():
            kept = [{c: p for c, p in f.items() if keep(c)} for f in found]
            rates[name][scenario] = sum(_alarmed(k, policy) for k in kept) / len(windows)
        rates["K-S"][scenario] = sum(_alarmed(ks(reference, w, model.schema), policy)
                                     for w in windows) / len(windows)
        medians[scenario] = {c: float(np.median([f[c] for f in found])) for c in found[0]}
    return rates, medians


def _alarmed(found: dict[str, float], policy: DriftPolicy) -> bool:
    return min(found.values()) < policy.false_alarm_rate / len(found)


def evidently_defaults(model: LoadedModel, reference: pd.DataFrame,
                       tables: dict[str, pd.DataFrame], window: int,
                       windows: int) -> dict[str, tuple[int, int, int]]:
    """Evidently's DataDriftPreset() as shipped: (windows, any column flagged, dataset flag)."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    from monitoring.drift import _dataset

    out = {}
    for scenario, table in tables.items():
        if scenario == AS_IF_ACCEPTED:
            continue
        count = windows if scenario == "none" else max(3, windows // 4)
        any_column = dataset_flag = 0
        stream, _ = scored(model, table)
        for current in windows_of(stream, window)[:count]:
            result = Report([DataDriftPreset()], include_tests=True).run(
                current_data=_dataset(current, model.schema, False),
                reference_data=_dataset(reference, model.schema, False)).dict()
            failed = [t for t in result["tests"] if t.get("status") == "FAIL"]
            any_column += any("Value Drift" in t.get("name", "") for t in failed)
            dataset_flag += any("Value Drift" not in t.get("name", "") for t in failed)
        out[scenario] = (count, any_column, dataset_flag)
    return out


# --- the champion -------------------------------------------------------------------------

@contextmanager
def champion_home(home: Path | None, data_seed: int | None = None) -> Iterator[Path]:
    """The given home, or a temporary one with a champion trained on TRAINING_ROWS rows
    (generated with `data_seed`, default the settings' SEED as `make data`)."""
    if home is not None:
        yield home
        return
    with tempfile.TemporaryDirectory(prefix="onebox-bench-champion-") as tmp:
        env = {**os.environ, "ONEBOX_HOME": tmp}
        seed = [] if data_seed is None else ["--seed", str(data_seed)]
        print(f"training a champion on {TRAINING_ROWS} generated rows (3 trials"
              f"{'' if data_seed is None else f', data seed {data_seed}'})...", flush=True)
        subprocess.run([sys.executable, "-m", "simulation.demo_tables",
                        "--rows", str(TRAINING_ROWS), *seed], env=env, check=True)
        subprocess.run([sys.executable, "-m", "orchestration.train", "--trials", "3"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        yield Path(tmp)


def load(home: Path) -> tuple[LoadedModel, Settings]:
    with mock.patch.dict(os.environ, {"ONEBOX_HOME": str(home)}):
        settings = Settings.from_env()
    model = registry.load_champion(registry.connect(settings), settings)
    if model is None:
        raise SystemExit(f"no @{registry.CHAMPION} in {home}: train first")
    return model, settings


# --- report -------------------------------------------------------------------------------

def _summary(outcomes: list[StreamOutcome], window: int, rate: float) -> list[str]:
    found = [o.detected_after for o in outcomes if o.detected_after is not None]
    within = sum(1 for k in found if k <= window)
    if found:
        median = statistics.median(found)
        spread = f"{median:.0f} ({min(found)}-{max(found)})"
        minutes = f"{median / rate:.1f}"
    else:
        spread, minutes = "never", "-"
    vias = sorted({o.via for o in outcomes if o.via})
    features = sorted({f for o in outcomes for f in o.features})
    shares = [o.share for o in outcomes if o.detected_after is not None]
    share = f"{statistics.median(shares):.2f}" if shares else "-"
    return [f"{within}/{len(outcomes)}", f"{len(found)}/{len(outcomes)}", spread, minutes,
            ",".join(vias) or "-", ", ".join(features) or "-", share]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None,
                        help="ONEBOX_HOME with a @champion (default: train one in a temp home)")
    parser.add_argument("--windows", type=int, nargs="+", default=[300, 1000],
                        help="window sizes in predictions")
    parser.add_argument("--streams", type=int, default=5,
                        help="replayed streams per scenario and window size (seeds)")
    parser.add_argument("--max-windows", type=int, default=3,
                        help="give up after this many windows of drifted traffic")
    parser.add_argument("--step-fraction", type=float, default=0.1,
                        help="the alarm is recomputed every WINDOW*this new predictions")
    parser.add_argument("--rate-per-minute", type=float, default=60.0,
                        help="assumed traffic (the simulator itself sends as fast as it can)")
    parser.add_argument("--clean-windows", type=int, default=20)
    parser.add_argument("--rate-windows", type=int, default=1000,
                        help="clean windows for the fast false-alarm-rate estimate (0: skip)")
    parser.add_argument("--scenario-windows", type=int, default=50,
                        help="drifted windows per scenario for the fast estimate")
    parser.add_argument("--defaults-windows", type=int, default=20,
                        help="clean windows for Evidently's own defaults, for comparison "
                             "(a quarter as many per scenario; 0: skip)")
    parser.add_argument("--false-alarm-rate", type=float, default=None,
                        help="override DRIFT_FALSE_ALARM_RATE")
    args = parser.parse_args(argv)

    with champion_home(args.home) as home, tempfile.TemporaryDirectory() as tmp:
        model, settings = load(home)
        traffic = Traffic(Path(tmp))
        policy = DriftPolicy.from_settings(settings).with_overrides(
            false_alarm_rate=args.false_alarm_rate)
        reference = model.reference()
        relations = sorted(ConditionalModel.fit(reference, model.schema).fits)
        counted = (len(model.schema.feature_names) + len(relations) + 1  # the joint test
                   + policy.prediction_alarm)
        if policy.prediction_alarm and not getattr(model, "reference_out_of_sample", True):
            print("warning: the prediction counts, but this version's reference predictions "
                  "are in-sample (the monitoring switches it off for such a version)")
        print(f"champion {model.name} v{model.version}; reference {len(reference)} rows; "
              f"false-alarm rate per window {policy.false_alarm_rate} -> column p < "
              f"{policy.false_alarm_rate / counted:.2g} ({counted} columns: the features, "
              f"relations of {', '.join(relations) or 'none'}, the features jointly; "
              f"prediction drift "
              f"{'counts' if policy.prediction_alarm else 'reported only'}); quality: AUC < "
              f"{policy.min_auc} on >= {policy.min_labels} labels; traffic "
              f"{args.rate_per_minute:g} predictions/min (assumed)", flush=True)
        started = time.perf_counter()

        rows, verdicts = [], []
        for window in args.windows:
            step = max(1, int(window * args.step_fraction))
            drifted_rows = window * args.max_windows
            clean = traffic.table(window * args.streams, 7_001, "none")
            for scenario in (*DRIFT_SCENARIOS, AS_IF_ACCEPTED):
                name = "new_card_category" if scenario == AS_IF_ACCEPTED else scenario
                drifted = traffic.table(drifted_rows * args.streams, 7_002, name)
                outcomes = [first_alarm(model, policy, reference,
                                        clean.iloc[s * window:(s + 1) * window],
                                        drifted.iloc[s * drifted_rows:(s + 1) * drifted_rows],
                                        step=step, drop_refused=scenario != AS_IF_ACCEPTED)
                            for s in range(args.streams)]
                refused_share = statistics.mean(o.refused for o in outcomes) / drifted_rows
                rows.append([scenario, str(window), *_summary(outcomes, window,
                                                              args.rate_per_minute),
                             f"{refused_share:.0%}"])
                print(f"  {scenario} @ {window}: {rows[-1][2]} within one window", flush=True)
                if scenario != AS_IF_ACCEPTED:
                    verdicts.append((scenario, window, rows[-1][2]))

        print(f"\nTime to alarm ({args.streams} streams each: a clean window, then drifted "
              f"predictions; recomputed every {args.step_fraction:.0%} of a window; minutes at "
              f"{args.rate_per_minute:g}/min; 'refused' = requests answered 422, not logged)")
        print(_table(["scenario", "window", "within 1 window", "detected",
                      "predictions to alarm: median (min-max)", "minutes", "via",
                      "features named", "share", "refused"], rows))

        print(f"\nClean traffic through the production path ({args.clean_windows} windows "
              "per size, labelled):")
        clean_ok = {}
        for window in args.windows:
            table = traffic.table(window * args.clean_windows, 9_001, "none")
            alarms, prediction_p = clean_alarms(model, policy, reference,
                                                windows_of(table, window))
            clean_ok[window] = not alarms
            # Were the prediction counted too, its threshold would be rate / (columns + 1).
            strict = policy.false_alarm_rate / (counted + 1 - policy.prediction_alarm)
            print(f"  window {window}: {len(alarms)} false alarm(s) in {args.clean_windows}"
                  + "".join(f"\n    {a}" for a in alarms)
                  + f"\n    prediction drift p-value: min {min(prediction_p):.2g}, median "
                  f"{statistics.median(prediction_p):.2g}; below {strict:.2g} in "
                  f"{sum(p < strict for p in prediction_p)} of {len(prediction_p)} windows",
                  flush=True)

        clean_rate: dict[int, float] = {}
        if args.rate_windows:
            print(f"\nShare of whole windows raising the data-drift alarm, the false-alarm rate "
                  f"split over each test set's columns ({args.rate_windows} clean windows, "
                  f"{args.scenario_windows} per scenario; tests called without the report):")
            for window in args.windows:
                tables = {"none": traffic.table(window * args.rate_windows, 11_001, "none")}
                for scenario in (*DRIFT_SCENARIOS[:-1], AS_IF_ACCEPTED):
                    name = "new_card_category" if scenario == AS_IF_ACCEPTED else scenario
                    tables[scenario] = traffic.table(window * args.scenario_windows, 11_002,
                                                     name)
                rates, medians = fast_rates(model, policy, reference, tables, window)
                clean_rate[window] = rates["chosen"]["none"]
                header = ["tests", *rates["chosen"], "P(0 alarms in 20 clean)"]
                table = [[name, *(f"{v:.3f}" for v in r.values()),
                          f"{(1 - r['none']) ** 20:.2f}"] for name, r in rates.items()]
                print(f"window {window}:\n" + _table(header, table), flush=True)
                shown = ["none", *JOINT_SCENARIOS]
                print(f"  median p-value by column, window {window} (each column drifts below "
                      f"{policy.false_alarm_rate / len(medians['none']):.2g}):\n" + _table(
                          ["column", *shown],
                          [[column, *(f"{medians[s][column]:.2g}" for s in shown)]
                           for column in medians["none"]]), flush=True)
                if args.defaults_windows:
                    found = evidently_defaults(model, reference, tables, window,
                                               args.defaults_windows)
                    print("  Evidently DataDriftPreset() defaults (windows / any column flagged"
                          " / dataset flag, share >= 0.5): " + "; ".join(
                              f"{s} {n}/{a}/{d}" for s, (n, a, d) in found.items()),
                          flush=True)

        joint_window = max(args.windows)
        print(f"\nTargets: every drift within one window of {min(args.windows)} (a joint drift "
              f"within one of {joint_window}); no false alarm in {args.clean_windows} clean "
              f"windows; at most {policy.false_alarm_rate:.1%} of {args.rate_windows} clean "
              "windows")
        for scenario, window, within in verdicts:
            if window == (joint_window if scenario in JOINT_SCENARIOS else min(args.windows)):
                print(f"  {scenario:<22} {within} streams alarmed within one {window}-row window")
        for window in args.windows:
            rate = (f"; {clean_rate[window]:.1%} of {args.rate_windows} clean windows alarmed"
                    if window in clean_rate else "")
            print(f"  clean @ {window}: "
                  f"{'no false alarm' if clean_ok[window] else 'FALSE ALARM'}{rate}")
        print(f"\n(bench took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
