"""The prediction logger's promises, on a real SQLite store: bounded memory when the
store is slower than the traffic, and every row written exactly once in the end."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.store import PredictionRecord, PredictionStore
from server.prediction_log import PredictionLogger
from server.spool import Spool
from tests.factories import valid_record


class StalledStore(PredictionStore):
    """The real store, whose writes wait until the test lets them through (a store
    slower than the traffic)."""

    def __init__(self, url: str):
        super().__init__(url)
        self.open = threading.Event()

    def log_chunks(self, chunks: Sequence[Sequence[PredictionRecord]]) -> int:
        self.open.wait(timeout=30)
        return super().log_chunks(chunks)


class SlowStore(PredictionStore):
    """The real store, each write taking `delay` seconds longer (slower than the traffic,
    but moving)."""

    def __init__(self, url: str, delay: float):
        super().__init__(url)
        self.delay = delay

    def log_chunks(self, chunks: Sequence[Sequence[PredictionRecord]]) -> int:
        threading.Event().wait(self.delay)
        return super().log_chunks(chunks)


def records(n: int) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    return [PredictionRecord(str(uuid.uuid4()), "churn-classifier", "1", valid_record(),
                             0.3, 0, now) for _ in range(n)]


def test_a_slow_store_spools_past_the_backlog_cap_and_loses_nothing(tmp_path: Path) -> None:
    store = StalledStore(f"sqlite:///{tmp_path / 'predictions.db'}")
    store.create_schema()
    logger = PredictionLogger(store, Spool(tmp_path / "spool"), batch_size=100,
                              flush_interval=0.01, replay_interval=0.1, max_backlog=300,
                              max_wait=0.3)
    sent = [records(50) for _ in range(20)]  # 1,000 predictions in 20 requests
    try:
        for request in sent:
            logger.submit(request)
            assert logger.backlog <= 300  # memory stays bounded while the store stalls
        assert logger.spooled_rows >= 1000 - 300 - 100  # the rest went to disk
        # One request waits out max_wait; while the writer makes no progress the next
        # ones spool at once instead of each waiting in vain.
        assert logger.waits_in_vain == 1
        store.open.set()
        assert logger.flush(timeout=30)
        for _ in range(100):  # the writer replays the spool every replay_interval
            if store.count() == 1000 and logger.spooled_rows == 0:
                break
            threading.Event().wait(0.1)
    finally:
        store.open.set()
        logger.close()
    ids = store.ids()
    assert len(ids) == 1000
    assert sorted(ids) == sorted(r.prediction_id for request in sent for r in request)
    assert logger.spooled_rows == 0
    store.dispose()


def test_a_store_slower_than_the_traffic_slows_requests_instead_of_spooling(
    tmp_path: Path,
) -> None:
    """Past the cap a request waits for the writer to make room: the backlog stays
    bounded and, the store still moving, nothing costs a trip through the spool."""
    store = SlowStore(f"sqlite:///{tmp_path / 'predictions.db'}", delay=0.02)
    store.create_schema()
    logger = PredictionLogger(store, Spool(tmp_path / "spool"), batch_size=100,
                              flush_interval=0.01, replay_interval=0.1, max_backlog=300,
                              max_wait=5.0)
    sent = [records(50) for _ in range(40)]  # 2,000 predictions: ~20 writes of 100
    highest = 0
    try:
        for request in sent:
            logger.submit(request)
            highest = max(highest, logger.backlog)
        assert logger.flush(timeout=30)
    finally:
        logger.close()
    assert highest <= 300
    assert logger.spooled_rows == 0 and not list((tmp_path / "spool").glob("spool-*"))
    assert sorted(store.ids()) == sorted(r.prediction_id for request in sent for r in request)
    store.dispose()


def test_a_claim_left_by_a_dead_worker_is_released_even_when_its_pid_is_taken_again(
    tmp_path: Path,
) -> None:
    """The spool is on a volume that outlives the container, and a new container numbers
    its processes from 1 again: a claim must not stay held because a stranger now has the
    dead worker's pid."""
    import os

    spool = Spool(tmp_path / "spool")
    spool.write(records(3))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (path,) = spool.pending()
    started = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    # Claimed by "this pid, started at another time" (the dead worker whose pid we now
    # have), and by a pid that is gone.
    reused = path.rename(path.with_name(f"{path.name}.claimed-{os.getpid()}.{int(started) - 1}"))
    spool.write(records(2))
    other = next(p for p in spool.pending() if p != path)
    gone = other.rename(other.with_name(f"{other.name}.claimed-{dead.pid}.{started}"))
    assert spool.pending() == []

    spool.release_stale_claims()

    assert sorted(p.name for p in spool.pending()) == sorted([path.name, other.name])
    assert not reused.exists() and not gone.exists()
    # A claim of a live process (this one, as claim() names it) stays held.
    claimed = spool.claim(path)
    spool.release_stale_claims()
    assert claimed is not None and claimed.exists() and path not in spool.pending()


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a disk that really fills up (root, as `make test` runs in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for a full disk (needs root): {done.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_with_the_store_away_and_the_spool_disk_full_requests_go_on_and_drops_are_counted(
    tiny_disk: Path,
) -> None:
    from orchestration.processes import free_port

    # A real PostgreSQL store that is away (nothing listens there), and a spool on a disk
    # that fills after a few hundred rows.
    away = PredictionStore(f"postgresql+psycopg2://onebox@127.0.0.1:{free_port()}/onebox")
    spool = Spool(tiny_disk / "spool")
    logger = PredictionLogger(away, spool, batch_size=50, flush_interval=0.01,
                              replay_interval=0.2, max_backlog=400, max_wait=0.05)
    try:
        assert not logger.store_available
        for _ in range(100):  # 5,000 rows: far more than disk and memory hold
            logger.submit(records(50))  # never raises: the request is answered
            assert logger.backlog <= logger.max_backlog + 50
        assert logger.spool_error is not None and "No space left" in logger.spool_error
        assert logger.dropped_rows > 0
        kept = logger.spooled_rows + logger.backlog
        assert kept + logger.dropped_rows == 5_000, (kept, logger.dropped_rows)

        # Room again (an operator grew the disk): what memory held goes to the spool.
        subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True)
        wait_until = time.monotonic() + 10
        while (logger.backlog or logger.spool_error) and time.monotonic() < wait_until:
            time.sleep(0.05)
        assert logger.backlog == 0 and logger.spool_error is None
        assert spool.rows() + logger.dropped_rows == 5_000
    finally:
        logger.close(timeout=5)
        away.dispose()
