"""`make bench-train`: wall time of the train flow by rows and by trial count.

Each case trains in its own temporary ONEBOX_HOME on generated data of a demo business
(`--business churn` by default, or `flights`: the real flight table has 300,153 rows,
`make bench-train BENCH_ARGS="--business flights --cases 10000x20 100000x20 300000x20"`);
the time is the flow's (search, refit, out-of-fold predictions, intervals, log, register,
gate, card), not the data generation.  A warm-up run first pays the temporary Prefect
server's start.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from core.schema import Schema
from simulation.demo_tables import by_short_name, demo_table

DEFAULT_CASES = ((10_000, 20), (10_000, 10), (10_000, 40), (100_000, 20))


def time_train(rows: int, trials: int, schema: Schema, settings: dict[str, str]) -> float:
    from orchestration.train import train

    with tempfile.TemporaryDirectory(prefix="onebox-bench-train-") as tmp:
        home = Path(tmp)
        data = home / "data" / "table.csv"
        data.parent.mkdir(parents=True)
        demo_table(schema, rows, 42).to_csv(data, index=False)
        with mock.patch.dict(os.environ, {**settings, "ONEBOX_HOME": str(home)}):
            started = time.perf_counter()
            train(n_trials=trials, data_path=str(data))
            return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=None,
                        help="ROWSxTRIALS, e.g. 10000x20 100000x20")
    parser.add_argument("--business", default="churn", help="churn or flights")
    args = parser.parse_args(argv)
    cases = ([tuple(int(v) for v in c.split("x")) for c in args.cases] if args.cases
             else DEFAULT_CASES)
    settings = by_short_name(args.business).settings()
    schema = Schema.load(Path(settings["SCHEMA_PATH"]))
    time_train(2_000, 1, schema, settings)  # warm-up: imports and the Prefect server
    results = [(rows, trials, time_train(rows, trials, schema, settings))
               for rows, trials in cases]
    base = results[0][2]
    print(f"\ntrain flow wall time ({args.business})")
    print(f"{'rows':>8} {'trials':>7} {'seconds':>8} {'x first case':>13}")
    for rows, trials, seconds in results:
        print(f"{rows:>8} {trials:>7} {seconds:>8.1f} {seconds / base:>13.2f}")


if __name__ == "__main__":
    main()
