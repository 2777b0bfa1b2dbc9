"""The benchmark's own parts: reading wrk's output, the ceiling app, a missing wrk."""

from __future__ import annotations

import pytest

from benchmarks.predictor.ceiling import create_app
from benchmarks.predictor.wrk import WrkMissing, WrkOutputUnreadable, parse_wrk_output, require_wrk
from core.schema import Schema

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:18777/predict
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.77ms    3.72ms  57.44ms   88.78%
    Req/Sec     2.56k   744.20     4.08k    56.67%
  Latency Distribution
     50%  402.00us
     75%    4.68ms
     90%    7.91ms
     99%    1.02s
  15382 requests in 10.02s, 4.47MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   1535.16
Transfer/sec:      1.48MB
"""


def test_wrk_output_gives_rate_percentiles_and_failures() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert result.requests == 15382
    assert result.requests_per_second == pytest.approx(1535.16)
    assert result.p50_ms == pytest.approx(0.402)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.non_2xx == 7
    assert result.socket_errors == 3
    assert not result.clean


def test_a_clean_run_has_no_failure_lines() -> None:
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines()
                      if "Non-2xx" not in line and "Socket errors" not in line)
    result = parse_wrk_output(clean)
    assert (result.non_2xx, result.socket_errors, result.clean) == (0, 0, True)


def test_output_without_figures_is_refused() -> None:
    with pytest.raises(WrkOutputUnreadable, match="cannot read"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_a_missing_wrk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(WrkMissing, match="apt-get install wrk"):
        require_wrk()


def test_the_ceiling_answers_predict_with_a_constant_document() -> None:
    client = create_app().test_client()
    first = client.post("/predict", json={"anything": 1})
    second = client.post("/predict", data=b"not even json")
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert set(first.get_json()) == {"prediction_id", "churn_probability", "churn", "model"}


def test_the_fidelity_estimate_shows_what_only_the_joint_test_sees(schema: Schema) -> None:
    """The fast estimate's test sets on a joint drift: the features' own tests and the
    relation tests stay quiet, the joint test alarms (two 1,000-row windows)."""
    from types import SimpleNamespace

    from benchmarks.fidelity import fast_rates
    from monitoring.drift import JOINT_COLUMN, DriftPolicy
    from simulation.generator import SCENARIOS, churn_probability, generate

    model = SimpleNamespace(schema=schema, threshold=0.5,
                            predict_proba=lambda frame: churn_probability(frame))
    tables = {"none": generate(2000, 3, schema=schema),
              "young_transactors": generate(2000, 4, SCENARIOS["young_transactors"], schema)}
    rates, medians = fast_rates(model, DriftPolicy(prediction_alarm=False),
                                generate(5000, 1, schema=schema), tables, 1000)

    assert set(rates) == {"chosen", "chosen without joint", "features' own tests", "K-S"}
    assert {name: r["none"] for name, r in rates.items()} == dict.fromkeys(rates, 0.0)
    assert rates["chosen"]["young_transactors"] == 1.0
    assert rates["chosen without joint"]["young_transactors"] == 0.0
    assert rates["features' own tests"]["young_transactors"] == 0.0
    assert medians["young_transactors"][JOINT_COLUMN] < 1e-6 < medians["none"][JOINT_COLUMN]
