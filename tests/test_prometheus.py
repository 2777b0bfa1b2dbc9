"""Prometheus's config and alert rules: promtool's checks and the rules' unit tests, and a
real Prometheus scraping a real predictor and drift exporter with the project's rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from operations import processes
from tests.conftest import home_env, set_up_store
from tests.factories import valid_record

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
# The job names the Grafana dashboards and the alert rules select on.
JOBS = {"predictor", "drift-exporter", "alertmanager"}
# Where the services' metrics are declared (a histogram adds _bucket/_sum/_count).
METRIC_SOURCES = (ROOT / "server" / "metrics.py", ROOT / "monitoring" / "exporter.py")
INSTALL_HINT = "apt-get install prometheus (Debian's package ships prometheus and promtool)"
ALERTMANAGER_INSTALL_HINT = "apt-get install prometheus-alertmanager"


def tool(name: str, install_hint: str = INSTALL_HINT) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {install_hint}")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_config_and_finds_its_rule_file() -> None:
    result = promtool("check", "config", str(CONFIG.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    # rule_files resolve relative to the config file, as they will in the container.
    assert "1 rule files found" in result.stdout, result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alert_rules())} rules found" in result.stdout, result.stdout


def test_every_alert_behaves_as_its_unit_tests_say() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_must_not() -> None:
    cases = [case for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
             for case in test["alert_rule_test"]]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        # A rule's own alerts carry its labels (two rules of one name, one per task, differ
        # by their `task` label: each must fire in a case of its own).
        fired = [alert for case in mine for alert in case["exp_alerts"]
                 if all(alert["exp_labels"].get(k) == v for k, v in rule["labels"].items())]
        assert fired, f"{rule['alert']} {rule['labels']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} never stays quiet"
        for alert in fired:
            assert set(alert["exp_annotations"]) == set(rule["annotations"])
    # ... and every expected alert is some rule's (its name and labels).
    for case in cases:
        for alert in case["exp_alerts"]:
            assert any(rule["alert"] == case["alertname"] and all(
                alert["exp_labels"].get(k) == v for k, v in rule["labels"].items())
                for rule in alert_rules()), (case["alertname"], alert["exp_labels"])


def test_every_alert_waits_has_a_severity_and_says_what_to_do() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "PredictorDown", "DriftExporterDown", "PredictorErrorRatio", "PredictorLatencyP99",
        "DataDrift", "LiveQualityLow", "PredictionLogBacklogGrowing", "DriftComputationStale"}
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{rule['alert']} has no for:"
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_alerts_select_only_jobs_prometheus_scrapes() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS
    selected = set(re.findall(r'job="([^"]+)"', ALERTS.read_text()))
    assert selected == JOBS


def is_declared(metric: str, source: str) -> bool:
    family = re.sub(r"_(bucket|sum|count)$", "", metric)
    if f'"{family}"' in source:
        return True
    # Families named in a loop: f"onebox_live_{name}" for name in ("auc", ...).
    prefix, _, last = family.rpartition("_")
    return f'f"{prefix}_{{' in source and f'"{last}"' in source


def test_alerts_use_metrics_the_services_export() -> None:
    from monitoring.quality import LiveQuality

    declared = "\n".join(path.read_text() for path in METRIC_SOURCES)
    # The exporter names the live and reference gauges after the live figures' fields.
    figures = {f"onebox_{kind}_{name}" for kind in ("live", "reference")
               for name in LiveQuality.figure_names()}
    assert 'f"onebox_live_{name}"' in declared and 'f"onebox_reference_{name}"' in declared
    # ... and the limits of those a window's limit depends on (core.task live_limits).
    figures |= {f"onebox_live_{name}_limit" for name in LiveQuality.figure_names()}
    assert 'f"onebox_live_{name}_limit"' in declared
    used = set(re.findall(r"\bonebox_\w+", ALERTS.read_text()))
    assert used
    missing = sorted(name for name in used
                     if name not in figures and not is_declared(name, declared))
    assert not missing, f"no service exports {missing}"


# --- a real Prometheus ------------------------------------------------------------------


class NotYet(AssertionError):
    """What a poll raises while Prometheus has not caught up yet."""


def eventually(check, timeout: float = 90.0):
    """Run `check` until it stops raising NotYet (scrapes and rule evaluations are periodic)."""
    return retry(stop=stop_after_delay(timeout), wait=wait_fixed(0.5),
                 retry=retry_if_exception_type(NotYet), reraise=True)(check)()


def local_config(targets: dict[str, str], interval: str = "1s", *,
                 rule_files: list[Path] | None = None,
                 alertmanager: str | None = None) -> dict:
    """The project's prometheus.yml with faster intervals: each job of `targets` scraping its
    host:port (the other jobs dropped), the rules of `rule_files` (alerts.yml by default),
    and alerts sent to `alertmanager` (host:port), or nowhere."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval=interval, scrape_timeout=interval,
                            evaluation_interval=interval)
    config["rule_files"] = [str(path) for path in (rule_files or [ALERTS])]
    config["scrape_configs"] = [job for job in config["scrape_configs"]
                                if job["job_name"] in targets]
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager]}]}]}
    return config


@contextmanager
def running(argv: list[str], log_path: Path, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        yield process
    finally:
        processes.stop(process)


@contextmanager
def running_alertmanager(config: Path, tmp_path: Path,
                         port: int | None = None) -> Iterator[str]:
    """Debian's Alertmanager on loopback (`port`, or a free one), one instance (no cluster
    port); yields its base URL once it is ready."""
    port = port or processes.free_port()
    argv = [tool("prometheus-alertmanager", ALERTMANAGER_INSTALL_HINT),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with running(argv, tmp_path / "alertmanager.log") as process:
        url = f"http://127.0.0.1:{port}"
        processes.wait_until_healthy(f"{url}/-/ready", process, timeout=60)
        yield url


@pytest.mark.slow
def test_prometheus_scrapes_the_services_and_loads_every_rule(
    trained_home: Path, tmp_path: Path
) -> None:
    prometheus_bin = tool("prometheus")
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    env = home_env(trained_home, PREDICTION_STORE_URL=store_url,
                   MODEL_CACHE_DIR=str(tmp_path / "model-cache"), SPOOL_DIR=str(tmp_path / "spool"))
    predictor_port, exporter_port, prometheus_port = (processes.free_port() for _ in range(3))
    # Alertmanager with no receiver: here it is only a scrape target (test_alerting
    # delivers through it).
    alertmanager_config = tmp_path / "alertmanager.yml"
    alertmanager_config.write_text(yaml.safe_dump({"route": {"receiver": "null"},
                                                   "receivers": [{"name": "null"}]}))
    alertmanager_port = processes.free_port()
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(local_config({
        "predictor": f"127.0.0.1:{predictor_port}",
        "drift-exporter": f"127.0.0.1:{exporter_port}",
        "alertmanager": f"127.0.0.1:{alertmanager_port}",
    })))
    prometheus_argv = [
        prometheus_bin, f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
    ]
    exporter_argv = [sys.executable, "-m", "monitoring.exporter",
                     "--bind", f"127.0.0.1:{exporter_port}", "--interval", "5"]
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"

    set_up_store(store_url)
    predictor = processes.start_predictor(predictor_port, env, tmp_path / "predictor.log")
    try:
        with (running_alertmanager(alertmanager_config, tmp_path, alertmanager_port),
              running(exporter_argv, tmp_path / "exporter.log", env) as exporter,
              running(prometheus_argv, tmp_path / "prometheus.log") as prometheus):
            processes.wait_until_healthy(f"http://127.0.0.1:{predictor_port}/health",
                                         predictor, timeout=90)
            processes.wait_until_healthy(f"http://127.0.0.1:{exporter_port}/health", exporter)
            # One prediction, so the request metrics the rules select on exist.
            answer = requests.post(f"http://127.0.0.1:{predictor_port}/predict",
                                   json=valid_record(), timeout=10)
            assert answer.status_code == 200, answer.text

            def every_target_up() -> dict[str, str]:
                if prometheus.poll() is not None:
                    raise RuntimeError((tmp_path / "prometheus.log").read_text()[-2000:])
                try:
                    targets = requests.get(f"{api}/targets", timeout=5).json()
                except requests.RequestException as exc:
                    raise NotYet(str(exc)) from exc
                health = {t["labels"]["job"]: t["health"]
                          for t in targets["data"]["activeTargets"]}
                if set(health) != JOBS or set(health.values()) != {"up"}:
                    raise NotYet(str(health))
                return health

            def every_rule_evaluated() -> dict[str, str]:
                groups = requests.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
                health = {rule["name"]: rule["health"]
                          for group in groups for rule in group["rules"]}
                if "unknown" in health.values():  # not evaluated yet
                    raise NotYet(str(health))
                return health

            def predict_requests_scraped() -> list[dict]:
                query = ('onebox_http_request_duration_seconds_count'
                         '{job="predictor", endpoint="/predict"}')
                result = requests.get(f"{api}/query", params={"query": query},
                                      timeout=5).json()["data"]["result"]
                if not result:
                    raise NotYet(query)
                return result

            eventually(every_target_up)
            rules = eventually(every_rule_evaluated)
            assert rules == {rule["alert"]: "ok" for rule in alert_rules()}
            # The latency rule's endpoint label is the one the predictor really writes.
            assert float(eventually(predict_requests_scraped)[0]["value"][1]) >= 1
    finally:
        processes.stop(predictor)
