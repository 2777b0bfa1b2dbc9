"""The prediction logger's promises, on a real SQLite store: bounded memory when the
store is slower than the traffic, and every row written exactly once in the end."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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
