"""The drift exporter as a real process: metrics for a drifted window, a capped window,
live quality once labels arrive, and a reference that follows the champion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core import registry
from core.schema import Schema, model_frame
from core.store import PredictionRecord, PredictionStore
from orchestration import processes
from simulation.generator import SCENARIOS, generate
from simulation.traffic import records_from_frame
from tests.conftest import home_env

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parent.parent


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == lv for k, lv in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_exporter_serves_drift_quality_and_a_capped_window(
    trained_home: Path, tmp_path: Path, schema: Schema, champion: registry.LoadedModel
) -> None:
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    store = PredictionStore(store_url)
    store.create_schema()
    # 3,000 older clean rows, then 1,500 newer ones with an economic shift, half labelled.
    frame = generate(3000, 61, schema=schema)
    drifted = generate(1500, 62, SCENARIOS["economic_shift"], schema)
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = []
    for i, (part, offset) in enumerate(((frame, 0), (drifted, 3000))):
        probs = champion.predict_proba(model_frame(schema, part))
        for j, (rec, p) in enumerate(zip(records_from_frame(part, schema), probs, strict=True)):
            rows.append((PredictionRecord(str(uuid.uuid4()), champion.name, champion.version,
                                          rec, float(p), int(p >= champion.threshold),
                                          start + timedelta(milliseconds=offset + j)),
                         int(part[schema.target].iloc[j]) if i == 1 and j % 2 == 0 else None))
    store.log([r for r, _ in rows])
    for record, actual in rows:
        if actual is not None:
            store.record_feedback(record.prediction_id, actual)
    store.dispose()

    port = processes.free_port()
    env = home_env(trained_home, PREDICTION_STORE_URL=store_url,
                   MODEL_CACHE_DIR=str(tmp_path / "cache"))
    with open(tmp_path / "exporter.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitoring.exporter", "--bind", f"127.0.0.1:{port}",
             "--window-rows", "1500", "--interval", "1"],
            env={**os.environ, **env}, cwd=REPO_ROOT, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/health", timeout=2).json()["computed_at"]:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        samples = scrape(url + "/metrics")
    finally:
        processes.stop(process)

    assert value(samples, "onebox_drift_window_rows", model_version="1") == 1500  # the cap
    for feature in ("customer_age", "credit_limit", "total_revolving_bal"):
        assert value(samples, "onebox_feature_drifted", feature=feature) == 1.0
    for feature in ("gender", "dependent_count", "card_category", "marital_status"):
        assert value(samples, "onebox_feature_drifted", feature=feature) == 0.0
    assert value(samples, "onebox_drift_share") == pytest.approx(3 / 11)
    assert value(samples, "onebox_feature_drift_score", feature="credit_limit") > 0.1
    assert value(samples, "onebox_live_labels") == 750
    assert 0.5 < value(samples, "onebox_live_auc") <= 1.0
    assert 0 <= value(samples, "onebox_live_precision") <= 1
    assert value(samples, "onebox_drift_computation_seconds") > 0
    assert value(samples, "onebox_drift_last_computed_timestamp_seconds") > start.timestamp()
    assert value(samples, "onebox_drift_errors_total") == 0
