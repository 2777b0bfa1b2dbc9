"""Prediction logging off the request path: a queue and one writer thread per worker
that writes in batches.  A failed write keeps its batch and retries with backoff,
so a store that is briefly away delays the log but does not lose it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from core.store import PredictionRecord, PredictionStore

log = logging.getLogger(__name__)


class PredictionLogger:
    def __init__(self, store: PredictionStore, *, batch_size: int = 500,
                 flush_interval: float = 0.2, max_backoff: float = 5.0):
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self._queue: queue.Queue[PredictionRecord] = queue.Queue()
        self._pending: list[PredictionRecord] = []
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[PredictionRecord]) -> None:
        for record in records:
            self._queue.put(record)

    @property
    def backlog(self) -> int:
        """Predictions accepted but not yet written."""
        return self._queue.qsize() + len(self._pending)

    @property
    def written(self) -> int:
        return self._written

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written; False if the timeout passed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.backlog:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`), then stop the writer."""
        self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=timeout)
        if self.backlog:
            log.error("prediction log closed with %d predictions unwritten", self.backlog)

    def _run(self) -> None:
        backoff = self.flush_interval
        while True:
            self._fill_pending()
            if not self._pending:
                if self._stop.is_set():
                    return
                continue
            try:
                self.store.log(self._pending)
            except Exception as exc:  # the store is away: keep the batch, try again later
                log.warning("prediction log write of %d rows failed (%s); retrying in %.1fs",
                            len(self._pending), exc, backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.flush_interval
            with self._idle:
                self._written += len(self._pending)
                self._pending = []
                self._idle.notify_all()

    def _fill_pending(self) -> None:
        if len(self._pending) >= self.batch_size:
            return
        try:
            timeout = 0.0 if self._pending else self.flush_interval
            self._pending.append(self._queue.get(timeout=timeout))
        except queue.Empty:
            return
        while len(self._pending) < self.batch_size:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                return
