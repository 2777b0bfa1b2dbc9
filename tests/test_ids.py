"""Prediction ids are canonical, distinct version-4 UUIDs that say they were issued here."""

from __future__ import annotations

import uuid

from server.ids import issued_here, load_or_create_key, new_prediction_ids

KEY = b"test-key-0123456789abcdef"


def test_ids_are_distinct_canonical_random_uuids() -> None:
    ids = new_prediction_ids(20_000, KEY) + new_prediction_ids(1, KEY)
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value
    assert new_prediction_ids(0, KEY) == []


def test_threads_and_forked_children_never_share_ids() -> None:
    import os
    import threading

    new_prediction_ids(3, KEY)  # the parent's block is now partly used
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write_end, "\n".join(new_prediction_ids(50, KEY)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    parent = new_prediction_ids(50, KEY)
    in_threads: list[list[str]] = []
    threads = [threading.Thread(target=lambda: in_threads.append(new_prediction_ids(2000, KEY)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = child + parent + [i for ids in in_threads for i in ids]
    assert len(child) == 50 and len(every) == 50 + 50 + 8000
    assert len(set(every)) == len(every)


def test_an_id_says_whether_this_stack_issued_it() -> None:
    ids = new_prediction_ids(2500, KEY)  # three nonces: 1,024 ids each at most
    assert all(issued_here(value, KEY) for value in ids)
    assert not any(issued_here(value, b"another stack's key!!!!!") for value in ids[:200])
    # Made-up ids, and ids from before tagging (plain uuid4), were not issued here; nor is
    # an issued id with one digit changed.
    assert not any(issued_here(str(uuid.uuid4()), KEY) for _ in range(200))
    tampered = ids[5][:10] + ("0" if ids[5][10] != "0" else "1") + ids[5][11:]
    assert not issued_here(tampered, KEY)
    assert not issued_here("not-a-uuid", KEY)


def test_every_worker_of_a_home_shares_one_id_key(tmp_path) -> None:
    import threading

    path = tmp_path / "home" / "prediction-id.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(path)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert load_or_create_key(path) == keys[0]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["prediction-id.key"]
