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
