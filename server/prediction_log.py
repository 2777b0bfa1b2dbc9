"""Prediction logging off the request path, and never losing a row.

Each gunicorn worker has a queue and one writer thread that writes batches to
the store.  When the store is unreachable a batch goes to the local durable
spool instead (server/spool.py), and while the store is down new batches go
straight there; every REPLAY_INTERVAL the writer tries to replay the spool, and
once that works the store is back in use.  A graceful shutdown (SIGTERM) writes
the queue to the store or, failing that, to the spool before the worker exits.  A worker
killed outright (SIGKILL) loses nothing it answered either: each request's predictions are
appended to its journal before the answer leaves, and another worker (or the next one)
replays the journal of a dead one (server/journal.py).

Memory is bounded: a request whose predictions would take the in-memory backlog
past `max_backlog` rows first waits up to `max_wait` seconds for the writer to make
room (a store a little slower than the traffic slows the answers a little: one
write's time), and then, if the store is stalled, writes them to the spool itself
(its answer waits for one fsync).  Spooling at once made things worse under
sustained load: a spooled row costs several times the CPU of a written one (JSON
out, fsync, JSON back, then the write), taken from the same two cores the writer
and PostgreSQL need, so the log fell further behind (measured: 45k rows/s written
while 90k/s were answered).  Never an unbounded queue or a lost row.

One exception, stated: when the store is away *and* the spool cannot be written (its disk
full, or read-only), the predictor keeps answering.  The writer keeps what it holds in
memory (at most `max_backlog` rows, retried every replay interval); past that, a
request's rows are dropped and counted (`dropped_rows`: /health, and the metric
onebox_prediction_log_dropped_rows_total), and `spool_error` says why.  Refusing
predictions because the log's disk is full would turn a side system's fault into the
service's; losing rows silently would hide it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

from core.migrations import NotMigrated
from core.store import PredictionRecord, PredictionStore
from server.journal import Journal, Segment
from server.spool import Spool

log = logging.getLogger(__name__)


class PredictionLogger:
    def __init__(self, store: PredictionStore, spool: Spool, *, batch_size: int = 2000,
                 flush_interval: float = 0.2, replay_interval: float = 2.0,
                 max_backlog: int = 20_000, max_wait: float = 1.0,
                 on_progress: Callable[[PredictionLogger], None] | None = None,
                 journal: bool = True):
        self.store = store
        self.spool = spool
        # In the spool's folder: the spool replays what it recovers.
        self.journal = Journal(spool.directory) if journal else None
        self.batch_size = batch_size
        self.max_backlog = max_backlog
        self.max_wait = max_wait
        self.flush_interval = flush_interval
        self.replay_interval = replay_interval
        self.on_progress = on_progress
        self.store_error: str | None = None  # why the store takes no rows (None: it does)
        self.store_available = self._store_answers()
        self.spooled_rows = spool.rows()
        # One queue item per request (its predictions, and the journal segment holding
        # them): a 1,000-row batch costs one put, not a thousand.
        self._queue: queue.Queue[tuple[Sequence[PredictionRecord], Segment | None]] = \
            queue.Queue()
        self._queued_rows = 0
        self._counts = threading.Lock()
        # Whole requests' predictions (each a sequence: a PredictionBatch from the
        # predictor), written together by one COPY.
        self._pending: list[Sequence[PredictionRecord]] = []
        self._pending_segments: list[tuple[Segment | None, int]] = []
        self._pending_rows = 0
        self._stop = threading.Event()
        # Set by a request that brings the backlog to a full batch (and by close): the
        # writer lingering for more rows wakes for that, not for every request.
        self._enough = threading.Event()
        self._idle = threading.Condition()
        self._batches_done = 0   # batches written or spooled by the writer (under _idle)
        self._stalled_at = -1    # _batches_done when a request last waited in vain
        self.waits_in_vain = 0   # requests that waited out max_wait (then spooled)
        self.dropped_rows = 0    # store away and spool unwritable: rows not kept
        self.spool_error: str | None = None  # why the spool last failed (None: it works)
        self._written = 0
        self._next_replay = 0.0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        if self.backlog + len(records) > self.max_backlog and not self._wait_for_room(
                len(records)):
            if self._spool(records):
                with self._counts:
                    self.spooled_rows += len(records)
            else:
                with self._counts:
                    self.dropped_rows += len(records)
            return
        segment = self.journal.append(records) if self.journal is not None else None
        with self._counts:
            self._queued_rows += len(records)
        self._queue.put((records, segment))
        if self.backlog >= self.batch_size and not self._enough.is_set():
            self._enough.set()

    def _spool(self, records: Sequence[PredictionRecord]) -> bool:
        """Write `records` to the spool; False (and `spool_error` set, logged once per
        episode) when it cannot be written."""
        try:
            self.spool.write(records)
        except OSError as exc:
            if self.spool_error is None:
                log.error("cannot write the spool (%s: %s): predictions are kept in memory "
                          "up to %d rows, then dropped and counted, until the store or the "
                          "spool takes them", type(exc).__name__, os.strerror(exc.errno or 0)
                          if exc.errno else exc, self.max_backlog)
            self.spool_error = f"{type(exc).__name__}: {exc}"
            return False
        if self.spool_error is not None:
            log.info("the spool is writable again")
            self.spool_error = None
        return True

    def _wait_for_room(self, rows: int) -> bool:
        """Wait up to max_wait for the backlog to have room for `rows` more; True if it has.
        (A request bigger than the whole cap is let in once the backlog is empty.)

        Once a wait has timed out, later requests do not wait again until the writer
        has finished a batch since: a store that hangs (a lock, a stalled network) must
        not cost every request max_wait."""
        deadline = time.monotonic() + self.max_wait
        with self._idle:
            if self._stalled_at == self._batches_done:
                return False
            while self.backlog and self.backlog + rows > self.max_backlog:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    self._stalled_at = self._batches_done
                    self.waits_in_vain += 1
                    return False
                self._idle.wait(remaining)
        return True

    @property
    def backlog(self) -> int:
        """Predictions answered but neither written nor spooled yet."""
        return self._queued_rows + self._pending_rows

    @property
    def written(self) -> int:
        return self._written

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written or spooled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.backlog:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 20.0) -> None:
        """Write (or spool) what is queued, then stop the writer."""
        self._stop.set()
        self._enough.set()
        self._thread.join(timeout=timeout)
        if self.journal is not None:
            self.journal.close()
        if self.backlog:
            log.error("prediction log closed with %d predictions neither written nor spooled",
                      self.backlog)

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._fill_pending()
                if self._pending:
                    self._write_pending()
                if time.monotonic() >= self._next_replay:
                    self._replay_spool()
                if self.on_progress is not None:
                    self.on_progress(self)
                if self._stop.is_set() and self._queue.empty() and not self._pending:
                    self._replay_spool()
                    return
            except Exception:
                # The one thread that keeps the log: whatever went wrong in a turn, say it
                # and go on (a dead writer would answer requests and log nothing).
                log.exception("prediction log writer: a turn failed; going on")
                self._stop.wait(self.replay_interval)

    def _write_pending(self) -> None:
        chunks, rows = self._pending, self._pending_rows
        if self.store_available:
            try:
                self.store.log_chunks(chunks)
            except Exception as exc:  # the store is away: spool, and say so once
                log.warning("prediction store unavailable (%s); spooling to %s",
                            exc, self.spool.directory)
                self.store_available = False
                self.store_error = f"unavailable: {type(exc).__name__}"
                self._next_replay = time.monotonic() + self.replay_interval
            else:
                self._done(rows, written=True)
                return
        if self._spool([record for chunk in chunks for record in chunk]):
            self._done(rows, spooled=True)
            return
        # Neither the store nor the spool: keep the batch (the backlog cap bounds it) and
        # try again after a replay interval, not in a busy loop.
        self._stop.wait(self.replay_interval)
        if self._stop.is_set():  # shutting down: nowhere to put them
            with self._counts:
                self.dropped_rows += rows
            log.error("prediction log closed with %d predictions neither written nor spooled "
                      "(%s)", rows, self.spool_error)
            # Their journal segments stay: whatever of them reached the disk is replayed
            # by the next worker.
            self._done(rows, release_journal=False)

    def _done(self, rows: int, *, written: bool = False, spooled: bool = False,
              release_journal: bool = True) -> None:
        """The pending batch is gone: written, spooled, or (neither) dropped."""
        if self.journal is not None and release_journal:
            for segment, count in self._pending_segments:
                if segment is not None:
                    self.journal.release(segment, count)
        with self._idle:
            if written:
                self._written += rows
            elif spooled:
                with self._counts:
                    self.spooled_rows += rows
            self._pending = []
            self._pending_segments = []
            self._pending_rows = 0
            self._batches_done += 1
            self._idle.notify_all()

    def _replay_spool(self) -> None:
        """Write spooled batches to the store; the first failure marks the store away."""
        self._next_replay = time.monotonic() + self.replay_interval
        if self.journal is not None:
            self.journal.recover(self.spool.adopt)
        self.spool.release_stale_claims()
        if not self.store_available and not self._store_answers():
            # Away, or its tables not migrated yet: replaying would fail (or write rows
            # into tables of another revision).  The spool keeps them; try again later.
            self._count_spooled()
            return
        for path in self.spool.pending():
            claimed = self.spool.claim(path)
            if claimed is None:
                continue  # a sibling worker is replaying it
            try:
                records = self.spool.read(claimed)
            except FileNotFoundError:
                continue  # taken from us meanwhile (its replay is another worker's now)
            except ValueError as exc:
                self.spool.set_aside(claimed, exc)
                continue
            try:
                self.store.log(records)
            except Exception as exc:
                self.spool.release(claimed)
                self.store_available = False
                self.store_error = f"unavailable: {type(exc).__name__}"
                break
            self.spool.done(claimed)
            self._written += len(records)
            if not self.store_available:
                log.info("prediction store is back; replaying the spool")
            self.store_available = True
        else:
            # Nothing left to replay (or nothing failed): the store takes new batches again.
            if not self.store_available and not self.spool.has_pending():
                self.store_available = True
        self._count_spooled()

    def _count_spooled(self) -> None:
        spooled = self.spool.rows()
        with self._counts:
            self.spooled_rows = spooled

    def _store_answers(self) -> bool:
        """Whether the store takes rows: it answers, and its tables are at this code's
        revision.  The predictor never migrates them (the stack's setup step does): until
        then its rows wait in the spool, and /health says why (`store_error`)."""
        try:
            self.store.ping()
            self.store.require_tables()
        except NotMigrated as exc:
            if self.store_error != str(exc):
                log.error("prediction log: %s; predictions spool meanwhile", exc)
            self.store_error = str(exc)
            return False
        except Exception as exc:
            self.store_error = f"unavailable: {type(exc).__name__}"
            return False
        self.store_error = None
        return True

    def _fill_pending(self) -> None:
        """Move queued requests' predictions into the pending batch (whole requests: a
        batch may pass batch_size by one request's worth)."""
        if self._pending_rows >= self.batch_size:
            return
        starting = not self._pending
        try:
            timeout = 0.0 if self._pending else self.flush_interval
            self._take(self._queue.get(timeout=timeout))
        except queue.Empty:
            return
        if starting and self.journal is not None:
            # A segment a batch or so: it is deleted as soon as its rows are kept.
            self.journal.rotate()
        # Linger up to flush_interval for more: under single-record traffic, writing each
        # wake-up's handful of rows made one commit per few rows, and those round trips,
        # not the rows, were the cost of logging.  The linger sleeps until a full batch
        # is queued (or the interval ends): waking for every request's put cost a thread
        # switch and a GIL hand-over each, ~15% of a single-record request's CPU.
        self._enough.clear()
        if self.backlog < self.batch_size and not self._stop.is_set():
            self._enough.wait(self.flush_interval)
        while self._pending_rows < self.batch_size:
            try:
                self._take(self._queue.get_nowait())
            except queue.Empty:
                return

    def _take(self, item: tuple[Sequence[PredictionRecord], Segment | None]) -> None:
        records, segment = item
        # Pending first, then the count: `backlog` never misses rows in between.
        self._pending.append(records)
        self._pending_segments.append((segment, len(records)))
        self._pending_rows += len(records)
        with self._counts:
            self._queued_rows -= len(records)
