"""`make bench-fidelity DEMO=flights` (and `make bench-false-alarms DEMO=flights`): the drift
alarm on flight fares -- each drift scenario caught within one window, and how often clean
windows cry wolf.

A champion is trained as the stack trains one (benchmarks.fidelity's `champion_home`: the
demo table's command, then the train flow, on TRAINING_ROWS generated fares).  Windows of
1,000 and 5,000 fares are then scored as the predictor scores them and assessed as the
drift exporter and the drift-check flow assess them (monitoring.window `assess`: every
feature's and the predicted number's drift test, the joint test, live quality on labelled
rows against the holdout's -- LiveErrorHigh's limit, core.task live_error_limits --, the
label-free estimate), each window whole:

- clean windows (`--clean-windows` per size): the share that raised the alarm, against the
  policy's DRIFT_FALSE_ALARM_RATE (its promise per window) with its 95% interval;
- each drift scenario (`--scenario-windows` per size, every row drifted): the share of
  windows that raised it ("caught within one window": the window a dashboard shows once
  one window of drifted traffic has been served), and by what.  `fuel_surcharge` changes
  only the fares: the quality leg catches it once labels come back -- here every row is
  labelled, the best case; a fare is known when the ticket is sold, at most `days_left`
  (49) days after the prediction.  IntervalCoverageLow's condition is counted too (the
  answered intervals holding the fares three standard errors less often than their
  level): a window "raises" when the alarm or that alert would;
- `new_route`: a fifth of the flights go to Goa, which the schema refuses (422 naming
  `destination_city`): never logged, so never drift; caught when the refused share passes
  the PredictionsRefused alert's 5%.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from benchmarks.false_alarms import wilson
from benchmarks.fidelity import Traffic, champion_home, load, refused, windows_of
from core.registry import LoadedModel
from core.schema import model_frame
from monitoring.drift import DriftPolicy
from monitoring.window import assess
from simulation.demo_tables import by_short_name

SIZES = (1_000, 5_000)
DRIFTS = ("late_booking", "business_up", "fuel_surcharge")
# The PredictionsRefused alert's threshold (monitoring/prometheus/alerts.yml).
REFUSED_ALERT_SHARE = 0.05


def logged(model: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Fares as the prediction log holds them once their real price came back."""
    schema = model.schema
    served = np.asarray(model.predict(model_frame(schema, frame)), dtype=float)
    out = frame.reset_index(drop=True).assign(
        **{model.task.logged_prediction: served, "actual": frame[schema.target].to_numpy()})
    if model.interval is not None:
        out["interval_low"], out["interval_high"] = model.interval.bounds(served)
    return out


def coverage_low(model: LoadedModel, figures: dict[str, float], labels: int,
                 min_labels: int) -> bool:
    """IntervalCoverageLow's condition: the live coverage three binomial standard errors
    below the level, on at least `min_labels` labels."""
    coverage = figures.get("interval_coverage")
    if model.interval is None or coverage is None or labels < min_labels:
        return False
    level = model.interval.level
    return coverage < level - 3 * math.sqrt(level * (1 - level) / labels)


def alarmed(model: LoadedModel, policy: DriftPolicy, windows: list[pd.DataFrame]
            ) -> tuple[int, collections.Counter[str], list[float]]:
    """How many windows raised the alarm or IntervalCoverageLow, what raised them, and
    each window's estimated RMSE over the holdout's."""
    hits, reasons, estimated = 0, collections.Counter(), []
    for window in windows:
        assessment = assess(model, window, policy, 0.05)
        quality = assessment.quality
        coverage = coverage_low(model, quality.figures(), quality.labels, policy.min_labels)
        hits += assessment.alarm.detected or coverage
        if assessment.alarm.detected or coverage:
            drift = assessment.drift
            reasons.update([*(drift.drifted_features if drift else []),
                            *(["prediction"] if drift and drift.prediction_drifted
                              and policy.prediction_alarm else []),
                            *(["live error"] if assessment.alarm.quality_degraded else []),
                            *(["coverage"] if coverage else [])])
        if assessment.estimated.rmse is not None:
            estimated.append(assessment.estimated.rmse / assessment.reference["rmse"])
    return hits, reasons, estimated


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean-windows", type=int, default=100, help="per window size")
    parser.add_argument("--scenario-windows", type=int, default=10, help="per size")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="the champion's training table's seed (default: SEED's)")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with (mock.patch.dict(os.environ, by_short_name("flights").settings()),
          champion_home(None, args.data_seed) as home, tempfile.TemporaryDirectory() as tmp):
        model, settings = load(home)
        policy = DriftPolicy.from_settings(settings)
        traffic = Traffic(Path(tmp))
        print(f"\nflight-prices v{model.version}: holdout RMSE "
              f"{model.holdout_metrics['rmse']:,.0f} INR; reference {len(model.reference())} "
              f"rows; policy: false-alarm rate {policy.false_alarm_rate:.1%} per window, live "
              f"error past {policy.max_error_ratio:g} x the holdout's and past it by three "
              f"standard errors, on {policy.min_labels} labels")
        print(f"{'traffic':<16} {'rows':>5} {'windows':>7} {'alarmed':>8} {'95% interval':>15}  "
              f"{'estimated RMSE / holdout':>24}  raised by")
        for size in args.sizes:
            runs = [("none", args.clean_windows)] + [
                (drift, args.scenario_windows) for drift in DRIFTS if args.scenario_windows]
            for scenario, count in runs:
                table = traffic.table(size * count, 31_000 + size, scenario)
                windows = windows_of(logged(model, table), size)
                hits, reasons, estimated = alarmed(model, policy, windows)
                low, high = wilson(hits, len(windows))
                by = ", ".join(f"{name} {n}" for name, n in reasons.most_common(4)) or "-"
                ratio = f"{np.mean(estimated):.2f}" if estimated else "n/a"
                print(f"{scenario:<16} {size:>5,} {len(windows):>7} {hits / len(windows):>8.1%} "
                      f"{f'[{low:.1%}, {high:.1%}]':>15}  {ratio:>24}  {by}", flush=True)
            routes = traffic.table(size, 32_000 + size, "new_route")
            share = float(refused(routes, model.schema).mean())
            print(f"{'new_route':<16} {size:>5,} {1:>7} {'refused':>8} {share:>15.1%}  "
                  f"{'':>24}  PredictionsRefused "
                  f"({'fires' if share > REFUSED_ALERT_SHARE else 'silent'}: > "
                  f"{REFUSED_ALERT_SHARE:.0%})")
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
