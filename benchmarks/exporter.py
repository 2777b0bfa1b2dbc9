"""`python -m benchmarks.exporter`: what one drift-exporter computation costs at
the window cap (3,000 rows), 10,000 and 100,000 rows, and what a sample would cost.

A champion is trained in a temporary home (or loaded with `--home`), with a
REFERENCE_ROWS (5,000) reference as in production.  100,000 scored predictions
are logged (half of them labelled) to a prediction store (a temporary SQLite
file, or `--store-url`, e.g. a PostgreSQL database), and the exporter's own
`compute_once` runs at each window size; the read and the drift computation are
also timed apart.  The alternative to the cap, a random sample of the same size
drawn from a longer span, is timed too: it must read the span first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pandas as pd
from sqlalchemy import bindparam, update

from benchmarks.fidelity import Traffic, champion_home, load
from benchmarks.fidelity import records as request_records
from core.registry import PREDICTION_COLUMN, LoadedModel
from core.schema import model_frame
from core.settings import Settings
from core.store import PredictionRecord, PredictionStore, predictions
from monitoring.drift import DriftPolicy, compute_drift
from monitoring.exporter import DriftExporter

WINDOWS = (3_000, 10_000, 100_000)


def fill_store(store: PredictionStore, model: LoadedModel, frame: pd.DataFrame) -> None:
    """Log the frame as clean, scored predictions of the champion, every other one labelled."""
    schema = model.schema
    probability = model.predict_proba(model_frame(schema, frame))
    start = datetime.now(UTC) - timedelta(days=1)
    logged = [PredictionRecord(str(uuid.uuid4()), model.name, model.version, features,
                               float(p), int(p >= model.threshold),
                               start + timedelta(milliseconds=i))
              for i, (features, p) in enumerate(zip(request_records(frame, schema),
                                                    probability, strict=True))]
    for i in range(0, len(logged), 10_000):
        store.log(logged[i:i + 10_000])
    # Bind names must differ from the column names SQLAlchemy binds itself.
    labels = [{"labelled_id": r.prediction_id, "outcome": int(y)}
              for r, y in zip(logged[::2], frame[schema.target].iloc[::2], strict=True)]
    statement = (update(predictions).where(predictions.c.prediction_id == bindparam("labelled_id"))
                 .values(actual=bindparam("outcome")))
    with store.engine.begin() as conn:
        conn.execute(statement, labels)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of `repeats` calls."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None,
                        help="ONEBOX_HOME with a @champion (default: train one in a temp home)")
    parser.add_argument("--store-url", default=None,
                        help="an empty prediction store to fill (default: a temp SQLite file)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    with champion_home(args.home) as home, tempfile.TemporaryDirectory() as tmp:
        model, _ = load(home)
        store_url = args.store_url or f"sqlite:///{Path(tmp) / 'predictions.db'}"
        with mock.patch.dict(os.environ, {"ONEBOX_HOME": str(home),
                                          "PREDICTION_STORE_URL": store_url,
                                          "MODEL_CACHE_DIR": str(Path(tmp) / "cache")}):
            settings = Settings.from_env()
        store = PredictionStore(settings.prediction_store_url.get_secret_value())
        store.migrate()
        started = time.perf_counter()
        fill_store(store, model, Traffic(Path(tmp)).table(max(WINDOWS), 4242, "none"))
        print(f"logged {max(WINDOWS)} predictions to {store.engine.dialect.name} in "
              f"{time.perf_counter() - started:.0f} s; reference {len(model.reference())} rows",
              flush=True)

        policy = DriftPolicy.from_settings(settings)
        reference = model.reference()
        compute_drift(reference, store.recent(300).rename(
            columns={"probability": PREDICTION_COLUMN}), model.schema, policy)  # warm-up

        rows = []
        for window in WINDOWS:
            exporter = DriftExporter(settings, window_rows=window, interval_seconds=60)
            exporter.compute_once()  # loads the champion once, as the running exporter has
            total = timed(exporter.compute_once, args.repeats)
            assert exporter.snapshot.last_error is None, exporter.snapshot.last_error
            frame = store.recent(window, model_version=model.version)
            read = timed(lambda w=window: store.recent(w, model_version=model.version),
                         args.repeats)
            current = frame.rename(columns={"probability": PREDICTION_COLUMN})
            drift = timed(lambda c=current: compute_drift(reference, c, model.schema, policy,
                                                          report=False),
                          args.repeats)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rows.append((f"newest {window}", total, read, drift, rss_mb))
            print(f"  newest {window}: {total:.2f} s", flush=True)

        # The alternative: a 3,000-row random sample of the newest 100,000 (read, then sample).
        cap = WINDOWS[0]
        span = max(WINDOWS)

        def sampled() -> None:
            frame = store.recent(span, model_version=model.version).sample(cap, random_state=0)
            compute_drift(reference, frame.rename(columns={"probability": PREDICTION_COLUMN}),
                          model.schema, policy)

        sample_total = timed(sampled, args.repeats)
        rows.append((f"sample {cap} of newest {span}", sample_total, float("nan"),
                     float("nan"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        store.dispose()

    base = rows[0][1]
    print(f"\nOne exporter computation (median of {args.repeats}; reference "
          f"{len(reference)} rows; store {store.engine.dialect.name})")
    print(f"{'window':<28} {'total s':>8} {'read s':>7} {'drift s':>8} {'x cap':>6} "
          f"{'max RSS MB':>11}")
    for name, total, read, drift_s, rss in rows:
        print(f"{name:<28} {total:>8.2f} {read:>7.2f} {drift_s:>8.2f} {total / base:>6.1f} "
              f"{rss:>11.0f}")


if __name__ == "__main__":
    main()
