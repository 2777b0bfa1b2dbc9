"""`python -m benchmarks.false_alarms`: how often clean traffic raises the data-drift
alarm, per champion and over champions.

The alarm's promise (monitoring.drift) is a false-alarm rate of at most
DRIFT_FALSE_ALARM_RATE per window: each test is a two-sample test (the reference is a
sample too) and Bonferroni splits the rate over the columns counted.  A two-sample
test keeps its rate over the draws of both samples; a champion's reference is drawn
once, so one champion's rate is the rate *given its reference*, which scatters around
the promise (a reference whose months-on-book mean sits two standard errors off the
population's alarms more on that column; another alarms less).  `benchmarks.fidelity`
measures one champion; this trains `--champions` champions on tables generated with
different seeds (as different users' data would be), replays `--windows` clean windows
of `--rows` predictions through each (the decision as the exporter takes it:
`p_values`, the settings' policy, the prediction counted when it is on), and prints
each champion's rate, the columns that alarmed, and the rate over all champions
with its 95% interval (Wilson).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import binomtest

from benchmarks.fidelity import Traffic, champion_home, load, scored, windows_of
from monitoring.drift import ConditionalModel, DriftPolicy, p_values


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """95% interval of a binomial proportion (Wilson score, scipy's)."""
    interval = binomtest(successes, trials).proportion_ci(method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class ChampionRate:
    data_seed: int
    reference_rows: int
    columns: int
    windows: int
    alarms: int
    by_column: dict[str, int]

    def line(self, number: int) -> str:
        low, high = wilson(self.alarms, self.windows)
        named = sorted(self.by_column.items(), key=lambda item: -item[1])
        return (f"champion {number} (data seed {self.data_seed}, reference "
                f"{self.reference_rows} rows, {self.columns} columns): {self.alarms} of "
                f"{self.windows} windows alarmed = {self.alarms / self.windows:.2%} "
                f"[{low:.2%}, {high:.2%}]; columns: "
                f"{', '.join(f'{c} {n}' for c, n in named) or 'none'}")


def champion_rate(data_seed: int, windows: int, rows: int, traffic_seed: int) -> ChampionRate:
    """Train a champion on a table of `data_seed` and count its alarms on clean traffic."""
    with champion_home(None, data_seed) as home, tempfile.TemporaryDirectory() as tmp:
        model, settings = load(home)
        policy = DriftPolicy.from_settings(settings)
        reference = model.reference()
        conditional = ConditionalModel.fit(reference, model.schema)
        table = Traffic(Path(tmp)).table(rows * windows, traffic_seed, "none")
        stream, _ = scored(model, table)
        by_column: collections.Counter[str] = collections.Counter()
        alarms = columns = 0
        chunks = windows_of(stream, rows)
        for window in chunks:
            found = p_values(reference, window, model.schema, policy, conditional)
            columns = len(found)
            threshold = policy.false_alarm_rate / columns
            drifted = [column for column, p in found.items() if p < threshold]
            alarms += bool(drifted)
            by_column.update(drifted)
        return ChampionRate(data_seed, len(reference), columns, len(chunks), alarms,
                            dict(by_column))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--champions", type=int, default=4,
                        help="champions, each trained on a table of its own seed")
    parser.add_argument("--windows", type=int, default=1000,
                        help="clean windows per champion")
    parser.add_argument("--rows", type=int, default=1000, help="predictions per window")
    parser.add_argument("--first-seed", type=int, default=101,
                        help="data seed of the first champion (then +1, +2, ...)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="champions measured at once (each in its own process)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    # A process per champion: MLflow keeps process-wide state (tracking URI, artifact
    # repositories) that a second temporary home in the same process would trip over.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context,
                             max_tasks_per_child=1) as pool:
        futures = [pool.submit(champion_rate, args.first_seed + k, args.windows, args.rows,
                               21_001 + k)  # clean traffic of a seed no champion trained on
                   for k in range(args.champions)]
        results = []
        for number, future in enumerate(futures, start=1):
            results.append(future.result())
            print(results[-1].line(number), flush=True)
    alarms = sum(r.alarms for r in results)
    windows = sum(r.windows for r in results)
    low, high = wilson(alarms, windows)
    rate = DriftPolicy().false_alarm_rate
    print(f"\nClean {args.rows}-row windows, {args.champions} champions: {alarms} of "
          f"{windows} alarmed = {alarms / windows:.2%} (95% interval {low:.2%}-{high:.2%}); "
          f"promise: at most {rate:.1%} "
          f"({'met' if alarms / windows <= rate else 'NOT met'} on the estimate)")
    print(f"(bench took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
