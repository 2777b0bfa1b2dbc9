"""A durable local spool for predictions the store could not take.

Each batch becomes one file (written aside, fsynced, then renamed into place, so
a file is either whole or absent).  Any worker may replay any file: it claims a
file by renaming it (atomic, so only one worker gets it), writes the rows, and
deletes the file.  A claim left by a worker that died is released by the next
replay.  The store skips ids it already has, so a file replayed twice (written,
but the process died before deleting it) still logs each prediction once.

A claim is held by an exclusive lock (flock) on the claimed file for as long as its
worker replays it: the kernel drops a dead process's locks, so a claim nobody holds a
lock on belongs to a worker that is gone.  This holds across containers sharing the
spool volume on one host (the replicas of a Docker Swarm node, a restarted container),
where pids say nothing: a new container numbers its processes from 1 again, and another
container's pids are not in this one's /proc.  The claim's name carries the pid only
for a person reading the folder.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from core.store import PredictionRecord

log = logging.getLogger(__name__)

PENDING_GLOB = "spool-*.jsonl"
CLAIM_MARK = ".claimed-"


def encode_line(record: PredictionRecord) -> str:
    return json.dumps({
        "prediction_id": record.prediction_id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "features": record.features,
        "probability": record.probability,
        "decision": record.decision,
        "value": record.value,
        "interval_low": record.interval_low,
        "interval_high": record.interval_high,
        "created_at": record.created_at.isoformat(),
    }, separators=(",", ":"))


def _decode(line: str) -> PredictionRecord:
    # Lines spooled before regression rows carry no "value", before intervals no
    # "interval_low"/"interval_high": the record's defaults.
    raw = json.loads(line)
    raw["created_at"] = datetime.fromisoformat(raw["created_at"])
    return PredictionRecord(**raw)


def try_lock(path: Path) -> int | None:
    """A descriptor of `path` holding its exclusive lock (flock); None when the file is
    gone or another process (or descriptor) holds the lock.  The spool's claims and the
    journal's segments are both held this way."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _claimant() -> str:
    """This process, as a claim's name shows it (the lock, not the name, holds it)."""
    return str(os.getpid())


class Spool:
    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        # Request threads (an over-full queue) and the writer thread both write here:
        # next() on a count is atomic, so names never collide.
        self._sequence = itertools.count(1)
        # This spool's claims: claimed file -> the descriptor holding its lock.
        self._claims: dict[Path, int] = {}

    def write(self, records: Sequence[PredictionRecord]) -> Path:
        """Store a batch durably; returns its file."""
        name = f"spool-{time.time_ns()}-{os.getpid()}-{next(self._sequence)}.jsonl"
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("\n".join(encode_line(r) for r in records) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError:
            # A disk that filled mid-write: the partial file would hold the space forever.
            tmp.unlink(missing_ok=True)
            raise
        self._fsync_directory()
        return final

    def pending(self) -> list[Path]:
        """Spooled batch files nobody is replaying, oldest first."""
        return sorted(self.directory.glob(PENDING_GLOB))

    def has_pending(self) -> bool:
        return any(True for _ in self.directory.glob(PENDING_GLOB))

    def rows(self) -> int:
        """Predictions in the spool, claimed or not."""
        total = 0
        for path in self.directory.glob("spool-*.jsonl*"):
            try:
                with open(path, "rb") as fh:
                    total += sum(1 for _ in fh)
            except FileNotFoundError:
                continue  # replayed and deleted meanwhile
        return total

    def claim(self, path: Path) -> Path | None:
        """Take a file for replay; None if another worker took it first."""
        fd = try_lock(path)
        if fd is None:
            return None
        claimed = path.with_name(f"{path.name}{CLAIM_MARK}{_claimant()}")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:  # replayed and deleted before we had the lock
            os.close(fd)
            return None
        self._claims[claimed] = fd
        return claimed

    def release(self, claimed: Path) -> None:
        """Give a claimed file back (its replay failed)."""
        try:
            os.rename(claimed, self._unclaimed_name(claimed))
        finally:
            self._unlock(claimed)

    def release_stale_claims(self) -> None:
        """Give back files claimed by workers that are gone (no lock held on them)."""
        for claimed in self.directory.glob(f"spool-*.jsonl{CLAIM_MARK}*"):
            if claimed in self._claims:
                continue  # ours
            fd = try_lock(claimed)
            if fd is None:
                continue  # its worker lives, or it is gone already
            try:
                os.rename(claimed, self._unclaimed_name(claimed))
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)

    def _unlock(self, claimed: Path) -> None:
        fd = self._claims.pop(claimed, None)
        if fd is not None:
            os.close(fd)

    def adopt(self, path: Path) -> Path:
        """Make `path` (a dead worker's journal segment: server/journal.py) a spool file,
        replayed like the others."""
        final = self.directory / (f"spool-{time.time_ns()}-{os.getpid()}-"
                                  f"{next(self._sequence)}.jsonl")
        os.rename(path, final)
        return final

    @staticmethod
    def read(path: Path) -> list[PredictionRecord]:
        records = []
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    records.append(_decode(line.decode("utf-8")))
                except ValueError:
                    if line.endswith(b"\n"):
                        raise
                    # The last line of a journal cut short by a kill: its request was
                    # never answered (the answer waits for the whole write).
                    log.warning("%s: skipped a last line cut short", path.name)
        return records

    def done(self, claimed: Path) -> None:
        claimed.unlink(missing_ok=True)
        self._unlock(claimed)

    def set_aside(self, claimed: Path, error: Exception) -> Path:
        """A file that cannot be read (a broken line before its last) is kept for a
        person, out of the replay's way, instead of failing every replay."""
        aside = self.directory / f"unreadable-{self._unclaimed_name(claimed).name}"
        try:
            os.rename(claimed, aside)
        finally:
            self._unlock(claimed)
        log.error("%s cannot be read (%s): set aside as %s for a person to look at",
                  claimed.name, error, aside.name)
        return aside

    @staticmethod
    def _unclaimed_name(claimed: Path) -> Path:
        return claimed.with_name(claimed.name.rsplit(CLAIM_MARK, 1)[0])

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
