"""observe_many is observe() for each value: the same exposition, bucket for bucket."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from server.metrics import PROBABILITY_BUCKETS, Metrics, observe_many


def test_observe_many_matches_observe_for_every_value_including_bucket_edges() -> None:
    values = [0.0, 0.05, 0.050001, 0.15, 0.2, 0.49999, 0.5, 0.93, 1.0, 1.5, 0.05, 0.31] * 3
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    expected = Histogram("p", "p", buckets=PROBABILITY_BUCKETS, registry=one_by_one)
    actual = Histogram("p", "p", buckets=PROBABILITY_BUCKETS, registry=bulk)
    for value in values:
        expected.observe(value)
    observe_many(actual, values)
    observe_many(actual, [])
    assert samples(bulk) == samples(one_by_one)
    assert sum_of(bulk) == pytest.approx(sum_of(one_by_one), rel=1e-12)
    assert b'p_bucket{le="0.05"} 9.0' in generate_latest(bulk)


def samples(registry: CollectorRegistry) -> list[bytes]:
    # Everything but the creation timestamp (differs by construction) and the float sum
    # (added in another order, so equal only to rounding).
    return [line for line in generate_latest(registry).splitlines()
            if not line.startswith((b"p_created", b"p_sum"))]


def sum_of(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("p_sum")


def test_predicts_answers_are_counted_from_zero_before_the_first_request() -> None:
    # Prometheus's increase() cannot see a series' first value: a refusal that created its
    # series would count as none in the refusal rate and the PredictionsRefused alert.
    exposition = Metrics().exposition().decode()
    for status in ("200", "401", "403", "413", "422"):
        assert (f'onebox_http_requests_total{{endpoint="/predict",status="{status}"}} 0.0'
                in exposition), status


def test_a_regressions_numbers_count_and_add_up_as_one_by_one() -> None:
    """A regression model's predictions go to a summary (count and sum: the mean number
    served over time), in one update per request; a binary model's to the histogram."""
    from core.schema import Schema
    from core.task import task_of

    raw = Schema.load().to_dict() | {"task": "regression"}
    raw["target"] = {"name": "price", "unit": "INR"}
    numbers = [5123.5, 7300.0, 12.25, 9800.75] * 5
    metrics = Metrics()
    metrics.observe_predictions(task_of(Schema.from_dict(raw)), numbers)
    metrics.observe_predictions(task_of(Schema.load()), [0.2, 0.7])
    exposition = metrics.exposition().decode()
    assert f"onebox_predicted_value_count {float(len(numbers))}" in exposition
    assert f"onebox_predicted_value_sum {sum(numbers)}" in exposition
    assert "onebox_predicted_probability_count 2.0" in exposition
