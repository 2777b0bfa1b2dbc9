"""Grafana's provisioning and dashboards.

Grafana cannot run here, so the files are checked in two ways: statically (every
panel is wired to the provisioned datasource, the provider loads the folder compose
mounts) and live: a real Prometheus scrapes a real predictor and drift exporter
while simulated traffic (some of it drifted, with ground truth) flows, and every
panel's query must return data, as the panel would show it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
import requests
import yaml

from core.schema import Schema
from operations import processes
from simulation.generator import SCENARIOS, generate
from simulation.traffic import send_traffic
from tests.conftest import home_env, set_up_store
from tests.factories import diabetes_env, write_diabetes_home

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "monitoring" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "onebox-prometheus"
# Where docker-compose.yml mounts the repository's Grafana folders in the container.
MOUNTS = {
    "monitoring/grafana/provisioning/datasources": "/etc/grafana/provisioning/datasources",
    "monitoring/grafana/provisioning/dashboards": "/etc/grafana/provisioning/dashboards",
    "monitoring/grafana/dashboards": "/var/lib/grafana/dashboards",
}
# The Grafana variables the panels may use, and what they become against the test's 1 s
# scrapes: two minutes hold the whole traffic, plenty of samples for rate(), and the
# time the drift exporter may need for its first labelled window.
GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__interval": "2m"}
CHUNK_ROWS = 200
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref_id}]: {self.expr}"


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def panels(container: dict) -> Iterator[dict]:
    """Every panel of a dashboard, rows' nested panels (collapsed rows) included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def panel_queries() -> list[PanelQuery]:
    queries = []
    for dashboard in load_dashboards().values():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                queries.append(PanelQuery(dashboard["title"], panel["title"],
                                          target.get("refId", "?"), target.get("expr", "")))
    return queries


def as_prometheus_query(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_there_are_the_three_dashboards_with_unique_uids() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == {"service-health.json", "data-drift.json", "model-quality.json"}
    uids = [d.get("uid") for d in dashboards.values()]
    assert all(uids) and len(set(uids)) == len(uids), uids
    titles = [d.get("title") for d in dashboards.values()]
    assert all(titles) and len(set(titles)) == len(titles), titles


def test_the_datasource_is_the_default_prometheus_with_the_fixed_uid() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    [datasource] = config["datasources"]
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    # Panels without a datasource of their own fall back to the default one.
    assert datasource["isDefault"] is True
    assert datasource["editable"] is False


def test_every_panel_queries_the_provisioned_datasource() -> None:
    problems = []
    for name, dashboard in load_dashboards().items():
        # File provisioning never resolves an exported dashboard's ${DS_...} inputs.
        if "${DS_" in json.dumps(dashboard) or dashboard.get("__inputs"):
            problems.append(f"{name}: uses export inputs (${{DS_...}})")
        for panel in panels(dashboard):
            where = f"{name} / {panel.get('title')!r}"
            if panel.get("type") == "row":
                continue
            datasource = panel.get("datasource")
            if datasource is not None and datasource.get("uid") != DATASOURCE_UID:
                problems.append(f"{where}: datasource {datasource}")
            if not panel.get("targets"):
                problems.append(f"{where}: no queries")
            for target in panel.get("targets", []):
                target_ds = target.get("datasource")
                if target_ds is not None and target_ds.get("uid") != DATASOURCE_UID:
                    problems.append(f"{where}: target datasource {target_ds}")
                if not target.get("expr", "").strip():
                    problems.append(f"{where}: target {target.get('refId')} has no expr")
    assert not problems, "\n".join(problems)


def test_queries_use_only_the_grafana_variables_the_live_test_substitutes() -> None:
    leftovers = [str(q) for q in panel_queries() if "$" in as_prometheus_query(q.expr)]
    assert not leftovers, "\n".join(leftovers)


def mounts_of(service: dict) -> dict[str, str]:
    """A compose service's bind mounts as {repository folder: container path}."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
        out[source.removeprefix("./").rstrip("/")] = target.rstrip("/")
    return out


def test_the_provider_loads_the_folder_compose_mounts() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning/dashboards/onebox.yml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "onebox"
    assert provider["options"]["path"] == MOUNTS["monitoring/grafana/dashboards"]

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "grafana" in compose["services"], "docker-compose.yml has no grafana service"
    mounted = mounts_of(compose["services"]["grafana"])
    for folder, target in MOUNTS.items():
        assert (ROOT / folder).is_dir(), folder
        assert mounted.get(folder) == target, f"compose should mount ./{folder} at {target}"


# --- live: every panel query against a real Prometheus -------------------------------


def start_exporter(home_settings: dict[str, str], tmp_path: Path, port: int, store_url: str,
                   name: str = "exporter") -> subprocess.Popen:
    env = {**home_settings, "PREDICTION_STORE_URL": store_url,
           "MODEL_CACHE_DIR": str(tmp_path / f"{name}-cache")}
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "monitoring.exporter", "--bind", f"127.0.0.1:{port}",
             "--interval", "2", "--window-rows", "1000"],
            env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)


def start_prometheus(tmp_path: Path, port: int, targets: dict[str, int]) -> subprocess.Popen:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": job, "static_configs": [
            {"targets": [f"127.0.0.1:{target_port}"]}]} for job, target_port in targets.items()],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    with open(tmp_path / "prometheus.log", "wb") as log:
        return subprocess.Popen(
            [PROMETHEUS, f"--config.file={config_path}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def query(prometheus_url: str, expr: str) -> tuple[str, list[float]]:
    """(problem or "", the values) of an instant query, as a stat panel would read it."""
    resp = requests.post(f"{prometheus_url}/api/v1/query", data={"query": expr}, timeout=10)
    body = resp.json()
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", []
    data = body["data"]
    if data["resultType"] == "scalar":
        values = [float(data["result"][1])]
    else:
        values = [float(sample["value"][1]) for sample in data["result"]]
    if not values:
        return "empty result", []
    if all(math.isnan(v) for v in values):
        return "only NaN", values
    return "", values


def wait_until_scraped(prometheus_url: str, expr: str, expected: float,
                       timeout: float = 30.0) -> None:
    """Poll until Prometheus' latest sample of `expr` is `expected`."""
    deadline = time.monotonic() + timeout
    values: list[float] = []
    while time.monotonic() < deadline:
        _, values = query(prometheus_url, expr)
        if values == [expected]:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus shows {expr} = {values}, expected {expected}")


def failing_queries(prometheus_url: str, queries: list[PanelQuery]) -> list[str]:
    failures = []
    for panel_query in queries:
        problem, _ = query(prometheus_url, as_prometheus_query(panel_query.expr))
        if problem:
            failures.append(f"{panel_query}  -> {problem}")
    return failures


def log_tails(tmp_path: Path) -> str:
    return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace")
                                                    .splitlines()[-15:])
                     for path in sorted(tmp_path.glob("*.log")))


@pytest.fixture
def regression_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression business (the diabetes table) trained with the real train flow: the
    number's panels are filled by its predictor and exporter."""
    from orchestration.train import train

    home = tmp_path_factory.mktemp("dashboards-regression")
    with mock.patch.dict(os.environ, write_diabetes_home(home)):
        assert train(n_trials=2)["promoted"]
    return home


@pytest.mark.slow
@pytest.mark.postgres
def test_every_panel_query_returns_data_from_a_real_prometheus(
    trained_home: Path, regression_home: Path, tmp_path: Path, schema: Schema,
    postgres_url: str
) -> None:
    """A churn predictor and exporter beside a regression business's (one prediction log,
    each reading its own model's rows): every panel, of either task, shows data."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed (apt-get install prometheus): the dashboards' "
                    "queries cannot be checked without it")
    queries = panel_queries()
    predictor_port, exporter_port, prometheus_port, number_port, number_exporter_port = (
        processes.free_port() for _ in range(5))
    predictor_url = f"http://127.0.0.1:{predictor_port}"
    number_url = f"http://127.0.0.1:{number_port}"
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    started: list[subprocess.Popen] = []
    try:
        set_up_store(postgres_url)
        # All three start at once: the model load and Evidently's import overlap.
        predictor = processes.start_predictor(predictor_port, home_env(
            trained_home, PREDICTION_STORE_URL=postgres_url,
            MODEL_CACHE_DIR=str(tmp_path / "predictor-cache"),
            SPOOL_DIR=str(tmp_path / "spool")), tmp_path / "predictor.log")
        started.append(predictor)
        exporter = start_exporter(home_env(trained_home), tmp_path, exporter_port,
                                  postgres_url)
        started.append(exporter)
        number_env = diabetes_env(regression_home)
        number_predictor = processes.start_predictor(number_port, {
            **number_env, "PREDICTION_STORE_URL": postgres_url,
            "MODEL_CACHE_DIR": str(tmp_path / "number-predictor-cache"),
            "SPOOL_DIR": str(tmp_path / "number-spool")}, tmp_path / "number-predictor.log")
        started.append(number_predictor)
        number_exporter = start_exporter(number_env, tmp_path, number_exporter_port,
                                         postgres_url, name="number-exporter")
        started.append(number_exporter)
        prometheus = start_prometheus(tmp_path, prometheus_port, {
            "predictor": predictor_port, "drift-exporter": exporter_port,
            "number-predictor": number_port, "number-exporter": number_exporter_port})
        started.append(prometheus)
        processes.wait_until_healthy(f"{prometheus_url}/-/ready", prometheus, timeout=90)
        for url, process in ((f"{predictor_url}/health", predictor),
                             (f"http://127.0.0.1:{exporter_port}/health", exporter),
                             (f"{number_url}/health", number_predictor),
                             (f"http://127.0.0.1:{number_exporter_port}/health",
                              number_exporter)):
            processes.wait_until_healthy(url, process, timeout=90)

        # Clean customers, then a shifted economy, each with its ground truth.  A burst
        # that falls between two scrapes never shows in rate() (a new series has no
        # earlier sample), so the traffic goes in chunks, each one scraped before the next.
        traffic = pd.concat([generate(600, 71, schema=schema),
                             generate(400, 72, SCENARIOS["economic_shift"], schema)],
                            ignore_index=True)
        # Then the number's: the whole diabetes table, each with its real outcome.
        diabetes = Schema.load(Path(number_env["SCHEMA_PATH"]))
        numbers = pd.read_csv(number_env["DATA_PATH"])
        sends = [(predictor_url, traffic.iloc[start:start + CHUNK_ROWS], schema)
                 for start in range(0, len(traffic), CHUNK_ROWS)]
        sends += [(number_url, numbers.iloc[start:start + CHUNK_ROWS], diabetes)
                  for start in range(0, len(numbers), CHUNK_ROWS)]
        predictions = feedback = 0
        for url, chunk, chunk_schema in sends:
            stats = send_traffic(url, chunk, chunk_schema, batch_size=10, concurrency=4,
                                 send_feedback=True)
            assert stats.failed == 0 and stats.predictions == len(chunk), stats
            assert stats.feedback_sent == len(chunk), stats
            predictions += stats.predictions
            feedback += stats.feedback_sent
            wait_until_scraped(prometheus_url, "sum(onebox_predictions_total)", predictions)
            wait_until_scraped(prometheus_url, 'sum(onebox_http_requests_total'
                               '{endpoint="/feedback"})', feedback)

        # Scrapes every second and a drift computation every 2 s: poll until each panel
        # shows data, or report the ones that never did.
        deadline = time.monotonic() + 60
        failures = failing_queries(prometheus_url, queries)
        while failures and time.monotonic() < deadline:
            time.sleep(1)
            failures = failing_queries(prometheus_url, queries)
        assert not failures, (f"{len(failures)} of {len(queries)} panel queries show no "
                              "data:\n" + "\n".join(failures) + "\n" + log_tails(tmp_path))

        _, up = query(prometheus_url, "up")
        assert up == [1.0] * 4, "every job should be scraped successfully"
    finally:
        for process in reversed(started):
            processes.stop(process)
        shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)
