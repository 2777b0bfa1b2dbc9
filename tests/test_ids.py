"""Prediction ids are canonical, distinct version-4 UUIDs."""

from __future__ import annotations

import uuid

from server.ids import new_prediction_ids


def test_ids_are_distinct_canonical_random_uuids() -> None:
    ids = new_prediction_ids(20_000) + new_prediction_ids(1)
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value
    assert new_prediction_ids(0) == []


def test_threads_and_forked_children_never_share_ids() -> None:
    import os
    import threading

    new_prediction_ids(3)  # the parent's block is now partly used
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write_end, "\n".join(new_prediction_ids(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    parent = new_prediction_ids(50)
    in_threads: list[list[str]] = []
    threads = [threading.Thread(target=lambda: in_threads.append(new_prediction_ids(2000)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = child + parent + [i for ids in in_threads for i in ids]
    assert len(child) == 50 and len(every) == 50 + 50 + 8000
    assert len(set(every)) == len(every)
