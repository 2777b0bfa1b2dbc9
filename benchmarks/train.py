"""`make bench-train`: wall time of the train flow by rows and by trial count.

Each case trains in its own temporary ONEBOX_HOME on generated data; the time is
the flow's (search, refit, log, register, gate), not the data generation.  The
first case also pays the temporary Prefect server's start, so it runs twice and
the second run is the one reported.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

from core.schema import Schema
from simulation.generator import generate

DEFAULT_CASES = ((10_000, 20), (10_000, 10), (10_000, 40), (100_000, 20))


def time_train(rows: int, trials: int, schema: Schema) -> float:
    from orchestration.train import train

    with tempfile.TemporaryDirectory(prefix="onebox-bench-train-") as tmp:
        home = Path(tmp)
        data = home / "data" / "churn.csv"
        data.parent.mkdir(parents=True)
        generate(rows, 42, schema=schema).to_csv(data, index=False)
        with mock.patch.dict(os.environ, {"ONEBOX_HOME": str(home)}):
            started = time.perf_counter()
            train(n_trials=trials, data_path=str(data))
            return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=None,
                        help="ROWSxTRIALS, e.g. 10000x20 100000x20")
    args = parser.parse_args(argv)
    cases = ([tuple(int(v) for v in c.split("x")) for c in args.cases] if args.cases
             else DEFAULT_CASES)
    schema = Schema.load()
    time_train(2_000, 1, schema)  # warm-up: imports and the temporary Prefect server
    results = [(rows, trials, time_train(rows, trials, schema)) for rows, trials in cases]
    base = results[0][2]
    print("\ntrain flow wall time")
    print(f"{'rows':>8} {'trials':>7} {'seconds':>8} {'x first case':>13}")
    for rows, trials, seconds in results:
        print(f"{rows:>8} {trials:>7} {seconds:>8.1f} {seconds / base:>13.2f}")


if __name__ == "__main__":
    main()
