"""A durable local spool for predictions the store could not take.

Each batch becomes one file (written aside, fsynced, then renamed into place, so
a file is either whole or absent).  Any worker may replay any file: it claims a
file by renaming it (atomic, so only one worker gets it), writes the rows, and
deletes the file.  A claim left by a worker that died is released by the next
replay.  The store skips ids it already has, so a file replayed twice (written,
but the process died before deleting it) still logs each prediction once.

A claim names its process by pid and start time: the spool lives on a volume that
outlives the container, and a new container numbers its processes from 1 again, so a
pid alone could name a live stranger and keep a dead worker's claim forever.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from core.store import PredictionRecord

PENDING_GLOB = "spool-*.jsonl"
CLAIM_MARK = ".claimed-"


def _encode(record: PredictionRecord) -> str:
    return json.dumps({
        "prediction_id": record.prediction_id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "features": record.features,
        "probability": record.probability,
        "decision": record.decision,
        "created_at": record.created_at.isoformat(),
    }, separators=(",", ":"))


def _decode(line: str) -> PredictionRecord:
    raw = json.loads(line)
    raw["created_at"] = datetime.fromisoformat(raw["created_at"])
    return PredictionRecord(**raw)


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22);
    None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return stat.rsplit(")", 1)[1].split()[19]


def _claimant() -> str:
    """This process, as a claim names it: pid, and start time where /proc has it."""
    pid = os.getpid()
    started = _start_time(pid)
    return f"{pid}" if started is None else f"{pid}.{started}"


def _claimant_alive(claimant: str) -> bool:
    pid_text, _, started = claimant.partition(".")
    pid = int(pid_text)
    if started:
        return _start_time(pid) == started
    try:  # no start time recorded (no /proc): the pid is all there is
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        # Request threads (an over-full queue) and the writer thread both write here:
        # next() on a count is atomic, so names never collide.
        self._sequence = itertools.count(1)

    def write(self, records: Sequence[PredictionRecord]) -> Path:
        """Store a batch durably; returns its file."""
        name = f"spool-{time.time_ns()}-{os.getpid()}-{next(self._sequence)}.jsonl"
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("\n".join(_encode(r) for r in records) + "\n")
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
        claimed = path.with_name(f"{path.name}{CLAIM_MARK}{_claimant()}")
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def release(self, claimed: Path) -> None:
        """Give a claimed file back (its replay failed)."""
        os.rename(claimed, self._unclaimed_name(claimed))

    def release_stale_claims(self) -> None:
        """Give back files claimed by workers that are gone."""
        for claimed in self.directory.glob(f"spool-*.jsonl{CLAIM_MARK}*"):
            if not _claimant_alive(claimed.name.rsplit(CLAIM_MARK, 1)[1]):
                try:
                    self.release(claimed)
                except FileNotFoundError:
                    continue

    @staticmethod
    def read(path: Path) -> list[PredictionRecord]:
        with open(path, encoding="utf-8") as fh:
            return [_decode(line) for line in fh if line.strip()]

    @staticmethod
    def done(claimed: Path) -> None:
        claimed.unlink(missing_ok=True)

    @staticmethod
    def _unclaimed_name(claimed: Path) -> Path:
        return claimed.with_name(claimed.name.rsplit(CLAIM_MARK, 1)[0])

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
