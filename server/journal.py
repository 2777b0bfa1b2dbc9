"""Answered predictions on disk before the answer leaves, until the store has them.

The prediction logger writes batches from memory (server/prediction_log.py): a process
killed outright (SIGKILL, the kernel's OOM killer, a container or a Swarm task killed)
would lose what it had answered in its writer's last linger.  So each request's
predictions are first appended to the worker's journal -- one write(2), no fsync: the data
is in the kernel's page cache once write returns, and a killed *process* cannot take it
back (a power cut can; the spool's fsync covers the store-away case, not this one).

Segments: the journal is a series of files, `journal-<pid>-<time>-<n>.jsonl` in the spool folder,
each locked (flock, exclusive) by the worker writing it for as long as it lives.  The
logger's writer starts a new segment with each batch it takes; a segment is deleted once
every prediction in it is written to the store or spooled.  A graceful stop leaves none.

Recovery: a segment nobody holds the lock of belongs to a process that is gone (the
kernel drops a dead process's locks; containers sharing the spool volume on one host
share that kernel).  Any worker's replay takes such a segment -- locks it, renames it to a
spool file -- and the spool's replay writes it; the store skips ids it already has, so
every prediction the dead worker answered is logged exactly once.  A line the kill cut
short belongs to a request that was never answered, and is skipped.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from core.store import PredictionBatch, PredictionRecord
from server.spool import encode_line, try_lock

log = logging.getLogger(__name__)

SEGMENT_GLOB = "journal-*.jsonl"


def _line(prediction_id: str, model_name: str, model_version: str, features: dict,
          probability: float | None, decision: int | None, value: float | None,
          interval_low: float | None, interval_high: float | None, created_at: str) -> bytes:
    # The spool's line format (server/spool.py reads both), written by orjson: a
    # journal write is on the request's path.
    return orjson.dumps({
        "prediction_id": prediction_id, "model_name": model_name,
        "model_version": model_version, "features": features, "probability": probability,
        "decision": decision, "value": value, "interval_low": interval_low,
        "interval_high": interval_high, "created_at": created_at,
    }, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def encode(records: Sequence[PredictionRecord]) -> bytes:
    """One request's predictions as journal lines, one a prediction.  A PredictionBatch
    (what the predictor submits) is read column by column: no record objects built."""
    try:
        return _encode_fast(records)
    except TypeError:
        # What orjson refuses and the stdlib writes (an integer past 64 bits that a
        # schema without a maximum let through): the spool's own encoder.
        return "".join(encode_line(r) + "\n" for r in records).encode()


def _encode_fast(records: Sequence[PredictionRecord]) -> bytes:
    if isinstance(records, PredictionBatch):
        created = records.created_at.isoformat()
        return b"".join(
            _line(prediction_id, records.model_name, records.model_version, features,
                  probability, decision, value, low, high, created)
            for prediction_id, features, probability, decision, value, low, high in zip(
                records.prediction_ids, records.features, records.column("probabilities"),
                records.column("decisions"), records.column("values"),
                records.column("interval_lows"), records.column("interval_highs"),
                strict=True))
    return b"".join(_line(r.prediction_id, r.model_name, r.model_version, r.features,
                          r.probability, r.decision, r.value, r.interval_low, r.interval_high,
                          r.created_at.isoformat())
                    for r in records)


@dataclass
class Segment:
    path: Path
    fd: int
    outstanding: int = 0   # predictions appended, neither written nor spooled yet
    size: int = 0          # bytes written (appends happen under the journal's lock)
    current: bool = True   # still taking appends


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._segment: Segment | None = None
        # This journal's segments still on disk (open and locked): recovery skips them.
        self._mine: dict[Path, Segment] = {}
        self.error: str | None = None  # why the last append failed (None: it works)
        self.closed = False

    # -- request threads -----------------------------------------------------------

    def append(self, records: Sequence[PredictionRecord]) -> Segment | None:
        """Put `records` on disk; the segment holding them (None when the disk refused:
        the logger goes on from memory, as it did before there was a journal)."""
        data = encode(records)
        with self._lock:
            if self.closed:
                return None
            segment, end = None, 0
            try:
                segment = self._segment or self._open()
                end = segment.size
                view = memoryview(data)
                while view:
                    view = view[os.write(segment.fd, view):]
                segment.size += len(data)
            except OSError as exc:
                if segment is not None:
                    self._cut_back(segment, end)
                if self.error is None:
                    log.error("cannot write the prediction journal in %s (%s): a killed "
                              "worker would lose what it had not written yet",
                              self.directory, exc)
                self.error = f"{type(exc).__name__}: {exc}"
                return None
            self.error = None
            segment.outstanding += len(records)
            return segment

    # -- the writer thread ---------------------------------------------------------

    def rotate(self) -> None:
        """New appends go to a new segment (the writer starts a batch)."""
        with self._lock:
            old, self._segment = self._segment, None
            if old is not None:
                old.current = False
                self._drop_if_done(old)

    def release(self, segment: Segment, rows: int) -> None:
        """`rows` of `segment` are written or spooled."""
        with self._lock:
            segment.outstanding -= rows
            self._drop_if_done(segment)

    def close(self) -> None:
        """Stop journaling: segments whose predictions are all kept are deleted; one with
        predictions still unkept stays, unlocked, for another worker to recover."""
        with self._lock:
            self.closed = True
            self._segment = None
            for segment in list(self._mine.values()):
                segment.current = False
                self._drop_if_done(segment)
                if segment.fd >= 0:
                    os.close(segment.fd)
                    segment.fd = -1
            self._mine.clear()

    # -- recovery (any worker's replay) --------------------------------------------

    def recover(self, rename_to: Callable[[Path], Path]) -> int:
        """Hand every segment of a dead process to `rename_to(path) -> new path` (the
        spool, which replays it); returns how many were recovered."""
        recovered = 0
        # A segment its owner was killed while creating (never named, never written).
        for hidden in self.directory.glob(".journal-*.new"):
            fd = try_lock(hidden)
            if fd is not None:
                hidden.unlink(missing_ok=True)
                os.close(fd)
        for path in sorted(self.directory.glob(SEGMENT_GLOB)):
            if path in self._mine:
                continue
            fd = try_lock(path)
            if fd is None:
                continue  # its owner lives, or it was recovered or deleted meanwhile
            try:
                if os.fstat(fd).st_size == 0:
                    path.unlink(missing_ok=True)
                else:
                    rename_to(path)
                    recovered += 1
                    log.warning("recovered %s: the journal of a worker that was killed",
                                path.name)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
        return recovered

    # -- internals (under _lock) ---------------------------------------------------

    def _open(self) -> Segment:
        # Locked before it has its name: a segment is never seen unlocked while its
        # owner lives (recovery would take it).
        # The time as well as the pid: a restarted container numbers its processes from 1
        # again, and a new segment must never take the name of a dead one's.
        name = f"journal-{os.getpid()}-{time.time_ns()}-{next(self._numbers)}.jsonl"
        hidden = self.directory / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.directory / name
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._segment = Segment(path, fd)
        self._mine[path] = self._segment
        return self._segment

    def _cut_back(self, segment: Segment, end: int) -> None:
        """A write that failed part-way (a full disk) must not leave half a line for the
        next one to continue: cut the segment back to where it ended, or, failing that,
        retire it (no further line follows the broken one, which a replay then skips as
        a last line cut short)."""
        try:
            os.ftruncate(segment.fd, end)
        except OSError:
            if segment is self._segment:
                self._segment = None
                segment.current = False
                self._drop_if_done(segment)

    def _drop_if_done(self, segment: Segment) -> None:
        if segment.current or segment.outstanding > 0 or segment.fd < 0:
            return
        segment.path.unlink(missing_ok=True)
        os.close(segment.fd)
        segment.fd = -1
        self._mine.pop(segment.path, None)
