"""`make demo` (the README's first command) on each demo business, small: data, train,
serve, two phases of traffic with feedback, reports, and the summary a user reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from operations.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
# The settings `--business` makes: none of them may come from the test's environment.
BUSINESS_SETTINGS = ("SCHEMA_PATH", "MODEL_NAME", "MLFLOW_EXPERIMENT", "DATA_PATH")


def run_demo(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in BUSINESS_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-m", "operations.demo", "--rows", "3000", "--phase-rows", "300",
         "--trials", "2", "--port", str(free_port()), *args],
        env={**env, "ONEBOX_HOME": str(home), "PREFECT_HOME": str(home / "prefect")},
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout[done.stdout.index("onebox demo summary"):]


def test_the_flight_fare_demo_answers_numbers_with_intervals_and_sees_late_bookings(
        tmp_path: Path) -> None:
    summary = run_demo(tmp_path, "--business", "flights")
    assert "model            flight-prices v1 (promoted to @champion" in summary
    holdout = re.search(r"holdout RMSE +([\d,]+) \(90% interval covers ([\d.]+)%", summary)
    assert holdout and 0.8 <= float(holdout[2]) / 100 <= 1.0, summary
    for phase in ("normal", "drifted"):
        line = next(line for line in summary.splitlines() if line.startswith(phase))
        assert "300 served, 0 refused, 0 failed; feedback 300" in line, line
        # The error estimated before the labels (DLE) beside the live one, both in INR.
        figures = re.search(r"RMSE estimated ([\d,]+), live ([\d,]+);", line)
        assert figures and "intervals held" in line, line
        estimated, live = (float(figure.replace(",", "")) for figure in figures.groups())
        assert 0.5 < estimated / live < 2, line
    drifted = next(line for line in summary.splitlines() if line.startswith("drifted"))
    assert "(days_left)" in drifted  # booking closer to departure, and only that
    assert "prediction log   600 of 600 predictions logged" in summary
    assert (tmp_path / "data" / "flights.csv").is_file()
    assert len(list((tmp_path / "reports").glob("quality-*.html"))) == 2


# The churn demo (the default) is run once, by the quick start's test
# (tests/test_quickstart.py), which then serves its pages.
