"""Alerts that reach someone: Alertmanager's config rendered from the environment
(monitoring/alertmanager/render.py) and checked by amtool, and the real chain -- drifted
traffic in the prediction log, the drift exporter, Prometheus with the project's alert
rules, Alertmanager with the rendered config, a webhook this test serves -- carrying
DataDrift to the receiver, firing, then resolved once the traffic is clean again.

No Docker: Debian's `prometheus` and `prometheus-alertmanager` run as processes on free
loopback ports (`make test-prereqs` installs both).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from core import registry
from core.schema import Schema
from monitoring.alertmanager import render
from monitoring.alertmanager.render import ReceiverConfigError, Receivers
from operations import processes
from simulation.generator import SCENARIOS, generate
from tests.test_exporter import computed, log_scored, running_exporter, scrape
from tests.test_prometheus import (
    ALERTS,
    alert_rules,
    local_config,
    running,
    running_alertmanager,
)

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "apt-get install prometheus-alertmanager (Debian's package ships amtool too)"
WEBHOOK_URL = "https://hooks.example.com/services/T0/B0/s3cr3t-token"
SMTP = {"ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
        "SMTP_SMARTHOST": "smtp.example.com:587", "SMTP_FROM": "onebox@example.com",
        "SMTP_AUTH_USERNAME": "onebox", "SMTP_AUTH_PASSWORD": "smtp-pass-w0rd"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return path


def render_cli(out: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m monitoring.alertmanager.render --out OUT` as compose runs it, with only
    `env`'s receiver variables set."""
    base = {name: value for name, value in os.environ.items() if name not in render.VARIABLES}
    return subprocess.run([sys.executable, "-m", "monitoring.alertmanager.render",
                           "--out", str(out)], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def amtool_accepts(path: Path) -> None:
    done = subprocess.run([tool("amtool"), "check-config", str(path)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def rendered(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The config for `env`, written as the stack writes it and checked by amtool."""
    path = tmp_path / "alertmanager.yml"
    render.write(path, render.render_text(Receivers.from_env(env)))
    amtool_accepts(path)
    return yaml.safe_load(path.read_text())


# --- rendering: receivers from the environment ----------------------------------------------


def test_no_receiver_renders_a_null_receiver_amtool_accepts_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "alertmanager.yml"
    done = render_cli(out)
    assert done.returncode == 0, done.stderr
    assert "no receiver configured" in done.stderr and "sends them to nobody" in done.stderr
    amtool_accepts(out)
    config = yaml.safe_load(out.read_text())
    assert config["route"]["receiver"] == "null"
    assert config["receivers"] == [{"name": "null"}]


def test_a_webhook_receiver_gets_firing_and_resolved_and_its_path_is_never_printed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "alertmanager.yml"
    done = render_cli(out, ALERT_WEBHOOK_URL=WEBHOOK_URL)
    assert done.returncode == 0, done.stderr
    amtool_accepts(out)
    config = yaml.safe_load(out.read_text())
    assert config["route"]["receiver"] == "onebox"
    assert config["receivers"] == [{"name": "onebox", "webhook_configs": [
        {"url": WEBHOOK_URL, "send_resolved": True}]}]
    assert "https://hooks.example.com" in done.stderr
    assert "s3cr3t" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("env", "email"),
    [
        ({}, None),
        ({"ALERT_WEBHOOK_URL": WEBHOOK_URL}, None),
        # Half of it is refused (below), never quietly dropped; SMTP_REQUIRE_TLS alone is
        # the default's own value and means nothing without a server.
        ({"ALERT_WEBHOOK_URL": WEBHOOK_URL, "SMTP_REQUIRE_TLS": "on"}, None),
        (SMTP, {"to": "ops@example.com, oncall@example.com", "from": "onebox@example.com",
                "smarthost": "smtp.example.com:587", "require_tls": True, "send_resolved": True,
                "auth_username": "onebox", "auth_password": "smtp-pass-w0rd"}),
        ({**SMTP, "SMTP_AUTH_USERNAME": "", "SMTP_AUTH_PASSWORD": "", "SMTP_REQUIRE_TLS": "off"},
         {"to": "ops@example.com, oncall@example.com", "from": "onebox@example.com",
          "smarthost": "smtp.example.com:587", "require_tls": False, "send_resolved": True}),
    ],
    ids=["nothing", "webhook", "webhook-tls-switch", "smtp-with-login", "smtp-relay-no-tls"],
)
def test_the_email_receiver_appears_only_when_smtp_is_set(
    tmp_path: Path, env: dict[str, str], email: dict | None,
) -> None:
    config = rendered(tmp_path, env)
    [receiver] = config["receivers"]
    if email is None:
        assert "email_configs" not in receiver
    else:
        assert receiver["email_configs"] == [email]
    assert ("webhook_configs" in receiver) == ("ALERT_WEBHOOK_URL" in env)


def test_webhook_and_email_together_share_one_receiver_and_the_password_stays_unprinted(
    tmp_path: Path,
) -> None:
    out = tmp_path / "alertmanager.yml"
    done = render_cli(out, ALERT_WEBHOOK_URL=WEBHOOK_URL, **SMTP)
    assert done.returncode == 0, done.stderr
    amtool_accepts(out)
    [receiver] = yaml.safe_load(out.read_text())["receivers"]
    assert set(receiver) == {"name", "webhook_configs", "email_configs"}
    assert "ops@example.com" in done.stderr and "smtp.example.com:587" in done.stderr
    assert "smtp-pass-w0rd" not in done.stderr + done.stdout


@pytest.mark.parametrize("url", [
    "hooks.example.com/services/T0/B0/s3cr3t-token",     # no scheme
    "ftp://hooks.example.com/services/s3cr3t-token",
    "https:///services/s3cr3t-token",                     # no host
    "http://hooks.example.com:99999/s3cr3t-token",        # no such port
    "https://hooks.example.com/s3cr3t token",
])
def test_a_bad_webhook_url_is_refused_at_render_time_naming_the_variable(
    tmp_path: Path, url: str,
) -> None:
    out = tmp_path / "alertmanager.yml"
    done = render_cli(out, ALERT_WEBHOOK_URL=url)
    assert done.returncode == 1
    assert done.stderr.startswith("alertmanager config refused: ALERT_WEBHOOK_URL"), done.stderr
    assert "s3cr3t" not in done.stderr  # the value is not echoed: its path may be a token
    assert not out.exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ALERT_EMAIL_TO": "ops@example.com"}, "SMTP_SMARTHOST"),
        ({"SMTP_SMARTHOST": "smtp.example.com:587", "SMTP_FROM": "a@example.com"},
         "ALERT_EMAIL_TO"),
        ({**SMTP, "SMTP_FROM": ""}, "SMTP_FROM"),
        ({**SMTP, "SMTP_AUTH_PASSWORD": ""}, "SMTP_AUTH_PASSWORD"),
        ({**SMTP, "SMTP_AUTH_USERNAME": ""}, "SMTP_AUTH_USERNAME"),
        ({**SMTP, "SMTP_SMARTHOST": "smtp.example.com"}, "SMTP_SMARTHOST"),
        ({**SMTP, "ALERT_EMAIL_TO": "ops, oncall@example.com"}, "ALERT_EMAIL_TO"),
        ({**SMTP, "SMTP_REQUIRE_TLS": "maybe"}, "SMTP_REQUIRE_TLS"),
        # A login without a server: a setup gone half-way, not "no e-mail".
        ({"SMTP_AUTH_USERNAME": "u", "SMTP_AUTH_PASSWORD": "p"}, "SMTP_AUTH_USERNAME"),
    ],
    ids=["to-without-server", "server-without-to", "no-sender", "user-without-password",
         "password-without-user", "smarthost-without-port", "not-an-address", "tls-switch",
         "login-without-server"],
)
def test_half_an_email_setup_is_refused_naming_what_is_wrong(env: dict[str, str],
                                                             named: str) -> None:
    with pytest.raises(ReceiverConfigError, match=named):
        Receivers.from_env(env)


def test_a_placeholder_receiver_is_refused_outside_local() -> None:
    placeholder = {"ALERT_WEBHOOK_URL": "https://change-me.example/hook"}
    with pytest.raises(ReceiverConfigError, match="ALERT_WEBHOOK_URL still holds a placeholder"):
        Receivers.from_env({"APP_ENV": "cloud", **placeholder})
    assert Receivers.from_env({"APP_ENV": "local", **placeholder}).configured


# --- the routing ---------------------------------------------------------------------------


def seconds(duration: str) -> int:
    value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()
    return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_alerts_are_grouped_by_name_and_severity_and_critical_repeats_sooner() -> None:
    route = render.render(Receivers())["route"]
    assert route["group_by"] == ["alertname", "severity"]
    [critical] = [child for child in route["routes"]
                  if child["matchers"] == ['severity="critical"']]
    assert seconds(route["group_wait"]) < seconds(route["group_interval"])
    assert seconds(critical["repeat_interval"]) < seconds(route["repeat_interval"])
    # Alertmanager sends only on group_interval's ticks.
    for repeat in (critical["repeat_interval"], route["repeat_interval"]):
        assert seconds(repeat) % seconds(route["group_interval"]) == 0
    assert {rule["labels"]["severity"] for rule in alert_rules()} == {"critical", "warning"}


def test_inhibit_rules_name_alerts_and_labels_the_rules_have() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for inhibit in render.render(Receivers())["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            label, value = re.fullmatch(r'(\w+)="([^"]*)"', matcher).groups()
            if label == "alertname":
                assert value in rules, value
            else:
                assert value in {rule["labels"][label] for rule in rules.values()}, matcher
    # The warnings a critical predictor alert holds back share its `job` label.
    criticals = {name for name, rule in rules.items() if rule["labels"]["severity"] == "critical"}
    assert criticals and all('job="predictor"' in rules[name]["expr"] for name in criticals)


# --- real processes ------------------------------------------------------------------------


@pytest.mark.slow
def test_with_no_receiver_alertmanager_starts_and_keeps_the_alerts_it_is_sent(
    tmp_path: Path,
) -> None:
    config = tmp_path / "alertmanager.yml"
    assert render_cli(config).returncode == 0
    with running_alertmanager(config, tmp_path) as url:
        status = requests.get(f"{url}/api/v2/status", timeout=5).json()
        assert yaml.safe_load(status["config"]["original"])["route"]["receiver"] == "null"
        alert = {"labels": {"alertname": "DataDrift", "severity": "warning"},
                 "annotations": {"summary": "sent by hand"}}
        assert requests.post(f"{url}/api/v2/alerts", json=[alert], timeout=5).ok
        shown = requests.get(f"{url}/api/v2/alerts", timeout=5).json()
    assert [(a["labels"]["alertname"], [r["name"] for r in a["receivers"]]) for a in shown] \
        == [("DataDrift", ["null"])]


@dataclass
class Webhook:
    """An HTTP server on loopback that keeps every notification POSTed to it."""

    url: str
    notifications: queue.Queue = field(default_factory=queue.Queue)
    seen: list[dict] = field(default_factory=list)

    def next_with(self, status: str, timeout: float, *alive: subprocess.Popen) -> dict:
        """The next notification whose status is `status` (firing or resolved)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in alive:
                assert process.poll() is None, f"{process.args[0]} exited"
            try:
                notification = self.notifications.get(timeout=1)
            except queue.Empty:
                continue
            self.seen.append(notification)
            if notification["status"] == status:
                return notification
        raise AssertionError(f"no {status} notification within {timeout:.0f} s; "
                             f"received: {json.dumps(self.seen)[:2000]}")


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    notifications: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            notifications.put({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_port}/alerts", notifications)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


WINDOW = 1000


@pytest.mark.slow
def test_data_drift_under_drifted_traffic_reaches_the_webhook_then_resolves(
    trained_home: Path, champion: registry.LoadedModel, schema: Schema, tmp_path: Path,
    webhook: Webhook,
) -> None:
    """The drift exporter on a window of drifted predictions (an economic shift), Prometheus
    firing DataDrift on it and sending it to Alertmanager, Alertmanager notifying the webhook
    it was rendered for; then clean traffic fills the window and a resolved notification
    follows."""
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    start = datetime.now(UTC) - timedelta(hours=1)
    log_scored(store_url, champion, generate(WINDOW, 81, SCENARIOS["economic_shift"], schema),
               start)

    # Alertmanager: the config the stack renders, for this test's webhook.  Only its
    # timings are shortened, in this copy: a 30 s group_wait and a 5 m group_interval (the
    # longest a "resolved" waits) would keep the test waiting minutes for what they do.
    am_config = tmp_path / "alertmanager.yml"
    done = render_cli(am_config, ALERT_WEBHOOK_URL=webhook.url)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(am_config.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    am_config.write_text(yaml.safe_dump(config, sort_keys=False))
    amtool_accepts(am_config)

    # Prometheus: the project's alert rules, in a copy where DataDrift waits 5 s instead of
    # 30 minutes.  Every other rule keeps its own `for:` (5 minutes or more): none of them
    # can fire while this test runs, so the webhook hears of DataDrift alone.
    rules = yaml.safe_load(ALERTS.read_text())
    [data_drift] = [rule for group in rules["groups"] for rule in group["rules"]
                    if rule.get("alert") == "DataDrift"]
    assert data_drift["for"] == "30m"
    data_drift["for"] = "5s"
    rules_path = tmp_path / "alerts.yml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))

    with (running_exporter(trained_home, store_url, tmp_path, window_rows=WINDOW) as exporter,
          running_alertmanager(am_config, tmp_path) as alertmanager):
        # Its first computation, or why there is none (its /health says).
        computed(exporter, model_version="1")
        exporter_target = exporter.removeprefix("http://")
        prometheus_port = processes.free_port()
        prometheus_config = tmp_path / "prometheus.yml"
        prometheus_config.write_text(yaml.safe_dump(local_config(
            {"drift-exporter": exporter_target}, rule_files=[rules_path],
            alertmanager=alertmanager.removeprefix("http://"))))
        argv = [shutil.which("prometheus") or pytest.fail("apt-get install prometheus"),
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}"]
        with running(argv, tmp_path / "prometheus.log") as prometheus:
            firing = webhook.next_with("firing", 240, prometheus)
            flagged = sorted(dict(labels)["feature"]
                             for (name, labels), value in scrape(exporter + "/metrics").items()
                             if name == "onebox_feature_drifted" and value == 1.0)

            # Clean traffic, newer than the drifted rows: the window is clean again.
            log_scored(store_url, champion, generate(WINDOW, 82, schema=schema),
                       start + timedelta(minutes=10))
            resolved = webhook.next_with("resolved", 240, prometheus)

    expected_labels = {"alertname": "DataDrift", "severity": "warning",
                       "job": "drift-exporter", "instance": exporter_target}
    for notification in (firing, resolved):
        assert notification["path"] == "/alerts"
        assert notification["receiver"] == "onebox"
        assert notification["groupLabels"] == {"alertname": "DataDrift", "severity": "warning"}
        [alert] = notification["alerts"]
        assert alert["labels"] == expected_labels
        assert alert["status"] == notification["status"]
    [alert] = firing["alerts"]
    assert alert["annotations"]["summary"] == data_drift["annotations"]["summary"]
    description = alert["annotations"]["description"]
    assert description.startswith("Drift has been detected on every computation")
    # It names what moved, as the exporter measured it: the features to look at.
    assert {"customer_age", "credit_limit"} <= set(flagged), flagged
    features = re.search(r"Drifted features: ([\w, ]+)\.", description).group(1).split(", ")
    assert features == flagged, description
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert resolved["alerts"][0]["endsAt"] > alert["startsAt"]
    assert {n["groupLabels"]["alertname"] for n in webhook.seen} == {"DataDrift"}
    print(f"\n[alerting] DataDrift firing at {alert['startsAt']}, resolved at "
          f"{resolved['alerts'][0]['endsAt']}; drifted features {', '.join(flagged)}")
