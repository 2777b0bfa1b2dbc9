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
    store.migrate()
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
    store.migrate()
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


CLAIMING_WORKER = r"""
import sys
from pathlib import Path
from server.spool import Spool
spool = Spool(Path(sys.argv[1]))
claimed = [spool.claim(path) for path in spool.pending()]
print("CLAIMED", len([c for c in claimed if c]), flush=True)
sys.stdin.readline()  # holds its claims until told, or killed
"""


def test_a_claim_is_held_by_a_live_worker_and_released_when_it_dies(tmp_path: Path) -> None:
    """Claims are held by a lock, not judged by pid: replicas sharing the spool volume
    (another container's pids are not in this one's /proc) and a restarted container
    (pids from 1 again) must neither steal a live claim nor keep a dead one."""
    import sys

    spool = Spool(tmp_path / "spool")
    spool.write(records(3))
    spool.write(records(2))
    worker = subprocess.Popen([sys.executable, "-c", CLAIMING_WORKER, str(tmp_path / "spool")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        assert worker.stdout.readline().split() == ["CLAIMED", "2"]
        assert spool.pending() == []
        spool.release_stale_claims()
        assert spool.pending() == []  # the worker lives: its claims stay its own
        worker.kill()
        worker.wait(timeout=10)
        spool.release_stale_claims()
        assert len(spool.pending()) == 2  # gone: both files are replayable again
        # A claim of this process stays held against this spool and any other.
        claimed = spool.claim(spool.pending()[0])
        for replayer in (spool, Spool(tmp_path / "spool")):
            replayer.release_stale_claims()
            assert claimed is not None and claimed.exists()
        spool.done(claimed)
        assert len(spool.pending()) == 1
    finally:
        if worker.poll() is None:
            worker.kill()


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
    from operations.processes import free_port

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


# --- a worker killed outright (SIGKILL): its journal -------------------------------------------

KILLED_WORKER = r'''
import os, signal, sys, uuid
from datetime import UTC, datetime
from pathlib import Path
from core.store import PredictionBatch, PredictionRecord, PredictionStore
from server.prediction_log import PredictionLogger
from server.spool import Spool
from tests.factories import valid_record

home = Path(sys.argv[1])
store = PredictionStore(f"sqlite:///{home / 'predictions.db'}")
# The writer lingers far longer than this process lives: nothing reaches the store.
logger = PredictionLogger(store, Spool(home / "spool"), flush_interval=60, replay_interval=60)
now = datetime.now(UTC)
batch = PredictionBatch("churn-classifier", "1", now, [str(uuid.uuid4()) for _ in range(100)],
                        [valid_record() for _ in range(100)], [0.25] * 100, [0] * 100)
singles = [[PredictionRecord(str(uuid.uuid4()), "churn-classifier", "1", valid_record(), 0.5,
                             1, now)] for _ in range(7)]
for request in (batch, *singles):
    logger.submit(request)  # then the answer leaves: its ids are printed
    print("\n".join(r.prediction_id for r in request), flush=True)
print("READY", flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.readline()  # live until told to stop, then stop gracefully
logger.close()
'''


def start_worker(home: Path, how: str) -> tuple[subprocess.Popen, list[str]]:
    """A process with a prediction logger that answers 107 predictions; `kill`: then
    SIGKILLs itself, else it lives until its stdin gets a line."""
    import sys

    child = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(home), how],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    answered = []
    for line in child.stdout:
        if line.strip() == "READY":
            break
        answered.append(line.strip())
    assert len(answered) == 107, answered[-3:]
    return child, answered


def logged(store: PredictionStore, ids: list[str]) -> tuple[int, int]:
    """(rows, distinct ids) in the store among `ids`."""
    wanted = set(ids)
    found = [i for i in store.ids() if i in wanted]
    return len(found), len(set(found))


def test_a_worker_killed_outright_loses_no_answered_prediction(tmp_path: Path) -> None:
    """SIGKILL right after answering, before its writer wrote anything: the next worker
    on the same spool folder logs every answered prediction, each once."""
    child, answered = start_worker(tmp_path, "kill")
    assert child.wait(timeout=30) == -9
    store = PredictionStore(f"sqlite:///{tmp_path / 'predictions.db'}")
    store.migrate()
    assert logged(store, answered) == (0, 0)  # nothing reached the store
    assert list((tmp_path / "spool").glob("journal-*.jsonl"))
    survivor = PredictionLogger(store, Spool(tmp_path / "spool"), flush_interval=0.01,
                                replay_interval=0.1)
    try:
        deadline = time.monotonic() + 20
        while logged(store, answered)[1] < len(answered) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert logged(store, answered) == (107, 107)
        assert not list((tmp_path / "spool").glob("journal-*"))
        assert not list((tmp_path / "spool").glob("spool-*"))
    finally:
        survivor.close()
        store.dispose()


def test_a_live_workers_journal_is_left_to_it_and_gone_after_its_graceful_stop(
    tmp_path: Path,
) -> None:
    child, answered = start_worker(tmp_path, "live")
    store = PredictionStore(f"sqlite:///{tmp_path / 'predictions.db'}")
    store.migrate()
    neighbour = PredictionLogger(store, Spool(tmp_path / "spool"), flush_interval=0.01,
                                 replay_interval=0.05)
    try:
        time.sleep(1)  # about twenty of the neighbour's replays
        assert logged(store, answered) == (0, 0)  # the live worker's rows are its own
        assert list((tmp_path / "spool").glob("journal-*.jsonl"))
        child.stdin.write("stop\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
        assert logged(store, answered) == (107, 107)
        assert not list((tmp_path / "spool").glob("journal-*"))
    finally:
        neighbour.close()
        if child.poll() is None:
            child.kill()
        store.dispose()


def test_a_last_line_cut_short_by_a_kill_is_skipped_and_a_broken_one_before_it_is_not(
    tmp_path: Path,
) -> None:
    from server.journal import encode

    whole = encode(records(2))
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(whole + encode(records(1))[:40])
    assert [r.prediction_id for r in Spool.read(cut)] == [
        line.split(b'"')[3].decode() for line in whole.splitlines()]
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(encode(records(1))[:40] + b"\n" + whole)
    with pytest.raises(ValueError):
        Spool.read(broken)


def test_a_journal_write_cut_short_by_a_full_disk_leaves_only_whole_lines(
    tiny_disk: Path,
) -> None:
    from server.journal import Journal

    journal = Journal(tiny_disk / "spool")
    kept = 0
    while journal.append(records(7)) is not None:
        kept += 7
    assert journal.error is not None and "No space left" in journal.error
    assert kept > 0
    # Room again: the next request's lines follow whole ones, not the failed write's half
    # line (which a replay would then refuse as broken).
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True)
    assert journal.append(records(7)) is not None and journal.error is None
    kept += 7
    read = [r for path in (tiny_disk / "spool").glob("journal-*.jsonl")
            for r in Spool.read(path)]
    assert len(read) == kept
    journal.close()


def test_an_unreadable_spool_file_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    from server.journal import encode

    store = PredictionStore(f"sqlite:///{tmp_path / 'predictions.db'}")
    store.migrate()
    spool = Spool(tmp_path / "spool")
    good = records(4)
    spool.write(good)
    (tmp_path / "spool" / "spool-1-1-1.jsonl").write_bytes(
        encode(records(1))[:30] + b"\n" + encode(records(2)))
    logger = PredictionLogger(store, spool, flush_interval=0.01, replay_interval=0.05)
    try:
        deadline = time.monotonic() + 10
        while len(store.ids()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(store.ids()) == sorted(r.prediction_id for r in good)
        assert [p.name for p in (tmp_path / "spool").glob("unreadable-*")] == [
            "unreadable-spool-1-1-1.jsonl"]
        logger.submit(records(3))  # the writer goes on
        assert logger.flush() and len(store.ids()) == 7
    finally:
        logger.close()
        store.dispose()


def test_tables_older_than_the_code_spool_every_row_until_the_migrations_run(
    tmp_path: Path,
) -> None:
    """The predictor never migrates (the stack's setup step does): on tables of an older
    revision its rows wait in the spool, /health's `store_error` says to run the
    migrations, and once they have run the rows are written, each once."""
    from core import migrations

    store = PredictionStore(f"sqlite:///{tmp_path / 'predictions.db'}")
    migrations.upgrade(store.engine, "0002")
    logger = PredictionLogger(store, Spool(tmp_path / "spool"), batch_size=50,
                              flush_interval=0.01, replay_interval=0.1)
    sent = [records(25) for _ in range(4)]
    try:
        assert not logger.store_available
        assert "python -m core.migrations upgrade" in logger.store_error
        for request in sent:
            logger.submit(request)
        assert logger.flush(timeout=30)
        assert logger.spooled_rows == 100
        with store.engine.connect() as conn:
            assert migrations.current(conn) == "0002"  # untouched by the predictor
        PredictionStore(store.url).migrate()  # the setup step, from another process
        for _ in range(100):
            if logger.spooled_rows == 0 and logger.store_available:
                break
            threading.Event().wait(0.1)
        assert logger.store_error is None
    finally:
        logger.close()
    assert sorted(store.ids()) == sorted(r.prediction_id for request in sent for r in request)
    store.dispose()
