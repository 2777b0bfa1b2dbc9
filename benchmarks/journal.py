"""`make bench-journal`: what the prediction journal (server/journal.py) adds to a request.

Appends one request's predictions (a single record, then 1,000-row batches, as the
predictor submits them: a PredictionBatch) to a journal in a temporary folder, releasing
them as the writer would, rotating a segment every 50 requests; prints the time an
append takes.  Compare with the predictor's CPU a request (make bench: ~1 ms a single
record, ~17 us a row of a batch on this machine).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from core.store import PredictionBatch
from server.journal import Journal
from simulation.generator import generate
from simulation.traffic import records_from_frame


def batch(records: list[dict], n: int) -> PredictionBatch:
    return PredictionBatch("churn-classifier", "1", datetime.now(UTC),
                           [str(uuid.uuid4()) for _ in range(n)], records[:n], [0.25] * n,
                           [0] * n)


def main() -> int:
    from core.schema import Schema

    schema = Schema.load()
    records = records_from_frame(generate(1000, 3, schema=schema), schema)
    with tempfile.TemporaryDirectory(prefix="onebox-bench-journal-") as folder:
        journal = Journal(Path(folder))
        for rows, requests in ((1, 20_000), (1000, 300)):
            request = batch(records, rows)
            best = float("inf")
            for _ in range(3):  # the best of three: the machine's other load only adds
                started = time.perf_counter()
                for i in range(requests):
                    segment = journal.append(request)
                    journal.release(segment, rows)
                    if i % 50 == 0:
                        journal.rotate()
                best = min(best, (time.perf_counter() - started) / requests)
            print(f"{rows:>5}-row request: {best * 1e6:7.1f} us an append, "
                  f"{best / rows * 1e6:5.2f} us a row")
        journal.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
