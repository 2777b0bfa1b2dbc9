"""`docker compose up`, for real: the stack built from the project's files, started from
empty volumes with the secrets `make up` generates, and walked through its one published
port -- the front door, over TLS -- the way its users walk it, with their credentials.

Marker `stack`: it needs a Docker engine with compose v2 (`make test-prereqs` installs and
starts them) and fails, never skips, without one.  Upstream images are replaced by stand-ins
built from Debian's packages (tests/stack/); Grafana has none and is not started.  The
database passwords have @ / : % ? & in them, so every DSN the stack builds must encode them.

Each test brings what it needs (traffic, a report) and leaves the stack up, so they do not
depend on their order; the last step, `down -v` leaving nothing behind, is the fixture's
teardown.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from testkit.stacks import (
    ROOT,
    ComposeStack,
    EngineLease,
    send_traffic,
    start_stack,
    wait_for,
)
from tests import browser

pytestmark = [pytest.mark.stack, pytest.mark.timeout(2400),
              pytest.mark.usefixtures("engine_lease")]

MODEL = "churn-classifier"
SERVICE_PACKAGES = {"core", "server", "simulation", "monitoring", "reporting", "orchestration",
                    "operations"}
# Every long-running service `up --wait` must bring to healthy (all but Grafana).
LONG_RUNNING = {"postgres", "mlflow", "prefect-server", "prefect-worker", "predictor",
                "drift-exporter", "prometheus", "alertmanager", "gateway"}
ONE_OFF = {"config-check", "setup", "bootstrap", "deploy", "alertmanager-config"}
POLL_SECONDS = 3
# What answers without any credential on the published port: the health checks.
PUBLIC = {("GET", "/health"), ("GET", "/healthz")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          engine_lease: EngineLease) -> Iterator[ComposeStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("stack"),
        # URL-special characters: setup, MLflow, Prefect and the prediction log must all
        # cope (a DSN written with the raw password breaks on the first one).
        POSTGRES_PASSWORD="adm@in/pg:1%?&x-admin",
        MLFLOW_DB_PASSWORD="ml@flow/db:2%?&x-mlflow",
        PREFECT_DB_PASSWORD="pre@fect/db:3%?&x-prefect",
        MONITORING_DB_PASSWORD="mon@itor/db:4%?&x-monitor",
        N_TRIALS="3",
        MODEL_POLL_SECONDS=str(POLL_SECONDS),
        DRIFT_INTERVAL_SECONDS="5",
        DRIFT_WINDOW_ROWS="1000",
    )
    stack.down(volumes=True)  # from nothing
    try:
        seconds = stack.up()
        print(f"\n[stack] {stack.project}: up --wait from empty volumes in {seconds:.0f} s "
              f"(images built as needed); front door https://localhost:{stack.port}")
        yield stack
    finally:
        stack.down(volumes=True)
        left = stack.labelled("container") + stack.labelled("volume")
        assert not left, f"down -v left containers or volumes behind: {left}"


def predict(stack: ComposeStack, body: object) -> requests.Response:
    return stack.post("predictor", "/predict", json=body)


def served_versions(stack: ComposeStack, requests_: int = 12) -> set[str]:
    """The model versions a run of /predict requests was answered by (both workers)."""
    record = yaml.safe_load(README_EXAMPLE_BODY)
    return {predict(stack, record).json()["model"]["version"] for _ in range(requests_)}


# --- the README's own example ---------------------------------------------------------------

README = (ROOT / "README.md").read_text()
README_CURL = re.search(r'^curl -s --cacert gateway-ca\.pem -X POST "\$PUBLIC_URL/predict".*?\}\'$',
                        README, re.M | re.S)
README_EXAMPLE_BODY = re.search(r"-d '(\{.*?\})'", README_CURL.group(0), re.S).group(1)


def test_every_service_is_up_and_healthy_and_the_one_off_steps_succeeded(
    stack: ComposeStack,
) -> None:
    states = {c["Service"]: c for c in stack.containers()}
    assert "grafana" not in states
    for name in LONG_RUNNING:
        assert states[name]["State"] == "running", states[name]
        assert states[name]["Health"] == "healthy", states[name]
    for name in ONE_OFF:
        assert states[name]["State"] == "exited" and states[name]["ExitCode"] == 0, states[name]


def test_the_image_is_non_root_and_ships_only_what_runs(stack: ComposeStack) -> None:
    images = {c["Service"]: c["Image"] for c in stack.containers()}
    python_services = ONE_OFF | {"mlflow", "prefect-server", "prefect-worker", "predictor",
                                 "drift-exporter"}
    assert len({images[name] for name in python_services}) == 1, images
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", images["predictor"], "-c",
         "id -u; ls -A /app; ls -A /; test -e /app/.env && echo ENV-FILE || true"],
        capture_output=True, text=True, check=True, timeout=120)
    uid, *listing = done.stdout.split()
    assert uid != "0"
    app = set(listing) & (SERVICE_PACKAGES | {"tests", "benchmarks", ".git", ".venv", ".onebox"})
    assert app == SERVICE_PACKAGES, listing
    assert "ENV-FILE" not in listing


# --- nothing open but what is meant to be ------------------------------------------------------

def published_ports(stack: ComposeStack) -> dict[str, list[str]]:
    """Service -> its published host addresses, from Docker itself."""
    out = {}
    for container in stack.containers(all_states=False):
        published = [f"{p['URL']}:{p['PublishedPort']}" for p in container.get("Publishers") or []
                     if p.get("PublishedPort")]
        if published:
            out[container["Service"]] = published
    return out


# Every path a person or a client uses, and what it needs; the scan tries each without
# credentials, with wrong ones, and with the right ones.
SCAN = [
    ("GET", "/", "admin"), ("GET", "/reports/", "admin"), ("GET", "/mlflow/", "admin"),
    ("GET", "/mlflow/api/2.0/mlflow/experiments/search?max_results=5", "admin"),
    ("POST", "/mlflow/api/2.0/mlflow/registered-models/create", "admin"),
    ("GET", "/prefect/", "admin"), ("POST", "/prefect/api/deployments/filter", "admin"),
    ("GET", "/prometheus/", "admin"), ("GET", "/prometheus/api/v1/query?query=up", "admin"),
    ("GET", "/alertmanager/", "admin"), ("GET", "/alertmanager/api/v2/status", "admin"),
    ("GET", "/grafana/", "admin"),
    ("POST", "/predict", "predict"), ("POST", "/feedback", "feedback"),
    ("GET", "/model", "any-key"), ("GET", "/openapi.json", "any-key"),
    ("GET", "/metrics", "none"),  # the scraper's, inside only: not routed at all
    ("GET", "/no-such-page", "none"),
    ("GET", "/health", "public"), ("GET", "/healthz", "public"),
]


def test_a_scan_of_every_published_port_finds_nothing_open_but_the_health_checks(
    stack: ComposeStack,
) -> None:
    assert published_ports(stack) == {"gateway": [f"127.0.0.1:{stack.port}"]}
    base = f"https://localhost:{stack.port}"
    wrong_admin = (stack.admin[0], stack.admin[1] + "x")
    forged = {"Authorization": "Bearer obx_client_" + "A" * 43}
    opened = set()
    def request(method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(method, base + path, verify=str(stack.ca_file), timeout=30,
                                json={} if method == "POST" else None, **kwargs)

    for method, path, needs in SCAN:
        def call(method: str = method, path: str = path, **kwargs: object) -> requests.Response:
            return request(method, path, **kwargs)

        bare = call()
        if bare.status_code < 400:
            opened.add((method, path))
        if needs == "public":
            assert bare.status_code == 200, path
            continue
        if needs == "none":  # routed nowhere: 404 for everyone, with a login or without
            assert bare.status_code == 404, path
            assert call(auth=stack.admin).status_code == 404, path
            continue
        assert bare.status_code == 401, (method, path, bare.status_code)
        assert call(auth=wrong_admin).status_code == 401, path
        assert call(headers=forged).status_code == 401, path
        if needs == "admin":
            assert call(auth=stack.admin).status_code not in (401, 403), path
        elif needs in ("predict", "feedback"):
            other = "feedback" if needs == "predict" else "predict"
            assert call(headers=stack.key(other)).status_code == 403, path
            assert call(headers=stack.key(needs)).status_code not in (401, 403), path
            # A key opens the API, never the people's pages.
            assert requests.get(base + "/mlflow/", headers=stack.key(needs),
                                verify=str(stack.ca_file), timeout=30).status_code == 401
        else:  # any valid key, of either scope; never the people's login
            assert call(auth=stack.admin).status_code == 401, path
            for scope in ("predict", "feedback"):
                assert call(headers=stack.key(scope)).status_code == 200, (path, scope)
    print(f"\n[stack] scan of the front door: {len(SCAN)} paths x (no credentials, wrong, "
          f"forged key, right): open without credentials: {sorted(opened)}")
    assert opened == PUBLIC
    # Plain HTTP on the TLS port is refused, not answered.
    plain = requests.get(f"http://localhost:{stack.port}/health", timeout=10)
    assert plain.status_code == 400


def test_tls_is_checked_against_the_certificate_the_stack_made(stack: ComposeStack) -> None:
    assert stack.get("predictor", "/health").status_code == 200  # verified against ca_file
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{stack.port}/health", timeout=10)  # system CAs only


# --- the users' paths, with credentials -------------------------------------------------------

def test_bootstrap_trained_and_promoted_a_first_champion(stack: ComposeStack) -> None:
    versions = stack.model_versions(MODEL)
    assert versions["1"]["gate.decision"] == "promoted", versions["1"]
    assert stack.alias(MODEL, "champion") is not None
    health = stack.get("predictor", "/health").json()
    assert health["model_source"] == "registry"
    assert health["model"]["version"] == stack.alias(MODEL, "champion")
    assert "churn-classifier" in stack.logs("bootstrap")


def test_the_readme_curl_answers_a_batch_answers_and_a_bad_field_gets_its_422(
    stack: ComposeStack, tmp_path: Path,
) -> None:
    (tmp_path / "gateway-ca.pem").write_text(stack.ca_file.read_text())
    done = subprocess.run(["bash", "-c", README_CURL.group(0)], capture_output=True, text=True,
                          timeout=30, check=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PUBLIC_URL": stack.env["PUBLIC_URL"],
                               "ONEBOX_PREDICT_KEY": stack.env["ONEBOX_PREDICT_KEY"]})
    answer = yaml.safe_load(done.stdout)
    assert 0 <= answer["churn_probability"] <= 1 and answer["model"]["name"] == MODEL, done.stdout
    assert isinstance(answer["churn"], bool) and answer["prediction_id"]

    record = yaml.safe_load(README_EXAMPLE_BODY)
    batch = predict(stack, [record, {**record, "customer_age": 61}])
    assert batch.status_code == 200
    assert [p["prediction_id"] for p in batch.json()["predictions"]][0] != answer["prediction_id"]

    bad = predict(stack, {**record, "card_category": "titanium"})
    assert bad.status_code == 422
    assert [p["field"] for p in bad.json()["problems"]] == ["card_category"], bad.text


def test_feedback_lands_in_postgres_with_its_sender(stack: ComposeStack) -> None:
    record = yaml.safe_load(README_EXAMPLE_BODY)
    prediction_id = predict(stack, record).json()["prediction_id"]
    # Sent at once: the row may still be queued for the log (the predictor waits for it).
    answer = stack.post("predictor", "/feedback", json={"prediction_id": prediction_id,
                                                         "churn": 1})
    assert answer.status_code == 200, answer.text
    row = stack.psql("monitoring", "SELECT actual, feedback_by, feedback_trusted FROM "
                                   f"predictions WHERE prediction_id = '{prediction_id}'")
    assert row == "1|labels|t"


def test_made_up_feedback_ids_under_load_are_answered_at_once(stack: ComposeStack) -> None:
    """Made-up ids at 40 a second while /predict is busy -- before, each held a worker
    thread 0.4 s, and 20 a second filled all eight: each is a 404 at once, none waits for
    the log (the predictor's own counter), and /predict keeps its pace."""
    record = yaml.safe_load(README_EXAMPLE_BODY)
    waits = "onebox_feedback_log_waits_total"
    before = stack.predictor_metric(waits)

    def client(scope: str) -> requests.Session:
        # Kept-alive connections, as a real client holds them: one TLS handshake each.
        session = requests.Session()
        session.headers.update(stack.key(scope))
        return session

    ca = str(stack.ca_file)  # per call: REQUESTS_CA_BUNDLE would win over session.verify

    def predicting(seconds: float) -> list[float]:
        session, latencies = client("predict"), []
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.perf_counter()
            assert session.post(stack.url("predictor", "/predict"), json=record, verify=ca,
                                timeout=30).status_code == 200
            latencies.append(time.perf_counter() - started)
        return latencies

    done = threading.Event()

    def flooding() -> list[int]:
        session, statuses = client("feedback"), []
        while not done.is_set():  # 5 a second from each of 8 threads
            statuses.append(session.post(stack.url("predictor", "/feedback"), verify=ca,
                                         timeout=30, json={"prediction_id": str(uuid.uuid4()),
                                                           "churn": 0}).status_code)
            done.wait(0.2)
        return statuses

    quiet = predicting(8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        floods = [pool.submit(flooding) for _ in range(8)]
        try:
            busy = predicting(8)
        finally:
            done.set()
        statuses = [s for f in floods for s in f.result()]
    assert set(statuses) == {404} and len(statuses) >= 200, len(statuses)
    assert stack.predictor_metric(waits) == before

    def p99(values: list[float]) -> float:
        return sorted(values)[int(len(values) * 0.99) - 1] * 1000

    print(f"\n[stack] /predict through the front door, p99 {p99(quiet):.1f} ms alone, "
          f"{p99(busy):.1f} ms beside {len(statuses)} made-up /feedback ids in 8 s; "
          f"{len(quiet)} and {len(busy)} predictions; none waited for the log")


def test_prefect_lists_the_three_deployments_on_the_worker_pool(stack: ComposeStack) -> None:
    answer = stack.post("prefect-server", "/api/deployments/filter", json={})
    deployments = {d["name"]: d for d in answer.json()}
    assert set(deployments) == {"train", "report", "drift-check"}
    assert {d["work_pool_name"] for d in deployments.values()} == {"onebox"}
    assert all(len(d["schedules"]) == 1 for d in deployments.values())


def test_a_train_quick_run_registers_a_version_with_its_gate_decision_and_the_predictor_follows(
    stack: ComposeStack,
) -> None:
    before = stack.model_versions(MODEL)
    champion_before = stack.alias(MODEL, "champion")

    # Quick run: every parameter at its default, as the UI's button starts it.
    stack.wait_for_flow_run(stack.quick_run("train/train"))
    after = stack.model_versions(MODEL)
    [new] = set(after) - set(before)
    decision = after[new]["gate.decision"]
    assert decision in ("promoted", "rejected") and after[new]["gate.reason"]
    expected = new if decision == "promoted" else champion_before
    assert stack.alias(MODEL, "champion") == expected

    # Custom run with a gate that promotes anything: the predictor must follow the alias.
    stack.wait_for_flow_run(stack.quick_run("train/train", {"promotion_margin": -1.0}))
    promoted = max(stack.model_versions(MODEL), key=int)
    assert stack.alias(MODEL, "champion") == promoted
    moved_at = time.monotonic()
    wait_for(f"every predictor worker serving v{promoted}",
             lambda: True if served_versions(stack) == {promoted} else None,
             timeout=POLL_SECONDS + 60, interval=0.5)
    print(f"\n[stack] predictor served v{promoted} {time.monotonic() - moved_at:.1f} s after the "
          f"alias moved (MODEL_POLL_SECONDS={POLL_SECONDS})")


def test_a_report_quick_run_puts_a_report_on_the_front_doors_index(stack: ComposeStack) -> None:
    send_traffic(stack, 400, seed=7, feedback=True)
    stack.wait_for_flow_run(stack.quick_run("report/report"))
    index = stack.get("reports", "/")
    assert index.status_code == 200, index.text
    links = re.findall(r'href="([^"]+\.html)"', index.text)
    assert links, index.text[:2000]
    report = stack.get("reports", "/" + links[0].lstrip("./"))
    assert report.status_code == 200 and len(report.content) > 100_000, links[0]
    # Read-only: the front door serves the reports, never writes them or shows other state.
    assert stack.post("reports", "/", data="x").status_code in (403, 405)
    assert stack.get("reports", "/../data/churn.csv").status_code in (400, 404)


def test_the_first_champions_model_card_is_on_the_front_door(stack: ComposeStack) -> None:
    # Written by the bootstrap's train run into the reports volume, linked from the version.
    card = stack.get("reports", "/models/churn-classifier-v1.html")
    assert card.status_code == 200, card.text[:500]
    assert "churn-classifier v1" in card.text and "Promotion gate" in card.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", card.text)
    assert "models/churn-classifier-v1.html" in stack.get("reports", "/").text
    assert stack.get("reports", "/models/churn-classifier-v1.html", auth=None).status_code == 401


def test_prometheus_scrapes_every_target_loads_the_rules_and_has_the_onebox_series(
    stack: ComposeStack,
) -> None:
    send_traffic(stack, 300, seed=11, feedback=False)

    def targets_up() -> dict | None:
        active = stack.get("prometheus", "/api/v1/targets").json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if health == {"predictor": "up", "drift-exporter": "up",
                                    "alertmanager": "up"} else None

    wait_for("every scrape target up", targets_up, timeout=120, interval=2)

    rules = stack.get("prometheus", "/api/v1/rules").json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    written = {rule["alert"] for group in yaml.safe_load(
        (ROOT / "monitoring/prometheus/alerts.yml").read_text())["groups"]
        for rule in group["rules"]}
    assert loaded == written

    def series(query: str) -> list | None:
        result = stack.get("prometheus", "/api/v1/query", params={"query": query}).json()
        return result["data"]["result"] or None

    def predict_requests() -> list | None:
        # The /predict series exist at 0 from the predictor's start (server/metrics.py): wait
        # for a scrape that has the traffic, not for the series.
        found = series('sum(onebox_http_requests_total{endpoint="/predict"})')
        return found if found and float(found[0]["value"][1]) >= 3 else None

    requests_ = wait_for("onebox_http_requests_total counting the traffic", predict_requests,
                         timeout=120, interval=2)
    assert float(requests_[0]["value"][1]) >= 3
    # The exporter's drift figures for the served window (computed every 5 s here).
    wait_for("onebox_drift_share", lambda: series("onebox_drift_share"), timeout=180, interval=3)
    wait_for("onebox_feature_drift_score", lambda: series("onebox_feature_drift_score"),
             timeout=60, interval=3)


def test_alertmanager_is_up_on_its_rendered_config_and_prometheus_sends_to_it(
    stack: ComposeStack,
) -> None:
    """The stack's env names no receiver: Alertmanager runs on the null receiver, its
    config step says so, and Prometheus lists it as the active Alertmanager."""
    def active() -> list[str] | None:
        data = stack.get("prometheus", "/api/v1/alertmanagers").json()["data"]
        return [manager["url"] for manager in data["activeAlertmanagers"]] or None

    urls = wait_for("Prometheus knowing an Alertmanager", active, timeout=120, interval=2)
    assert urls == ["http://alertmanager:9093/api/v2/alerts"]
    assert "no receiver configured" in stack.logs("alertmanager-config")
    status = json.loads(stack.compose("exec", "-T", "alertmanager", "wget", "-qO-",
                                      "http://localhost:9093/api/v2/status").stdout)
    assert yaml.safe_load(status["config"]["original"])["route"]["receiver"] == "null"
    assert status["cluster"]["status"] == "disabled"


def test_the_uis_work_in_a_browser_through_the_front_door(stack: ComposeStack) -> None:
    """People's paths, in chromium: the front page, MLflow's registry, Prometheus, and
    Prefect's UI, which asks for the login itself (its API does) and then lists the
    deployments; the try-it page with an API key and no login.  Without the login, none
    of the others shows anything."""
    from selenium.webdriver.common.keys import Keys

    base = f"https://localhost:{stack.port}"
    try:
        with browser.open_browser(basic_auth=stack.admin, insecure=True) as chrome:
            chrome.get(f"{base}/")
            browser.wait_for_text(chrome, "Drift and quality reports")
            chrome.get(f"{base}/mlflow/#/models")
            browser.wait_for_text(chrome, MODEL)  # its scripts fetched the registry
            chrome.get(f"{base}/prometheus/")  # redirects to its graph page, under the prefix
            browser.wait_for_text(chrome, "Alerts")
            chrome.get(f"{base}/prefect/")
            deadline = time.monotonic() + 60
            while not chrome.find_elements("css selector", "input[type=password]"):
                assert time.monotonic() < deadline, chrome.find_element("tag name", "body").text
                time.sleep(0.5)
            field = chrome.find_element("css selector", "input[type=password]")
            field.send_keys(":".join(stack.admin), Keys.ENTER)
            time.sleep(2)
            chrome.get(f"{base}/prefect/deployments")
            for name in ("drift-check", "report", "train"):
                browser.wait_for_text(chrome, name, timeout=60)
        with browser.open_browser(insecure=True) as analyst:
            # The try-it page needs no login, only the predictor's API key, which it asks for;
            # the model card of the served version is linked from the reports, behind the login.
            analyst.get(f"{base}/try")
            browser.wait_for_text(analyst, "asks for an API key")
            analyst.find_element("id", "key").send_keys(stack.env["ONEBOX_PREDICT_KEY"])
            analyst.find_element("id", "use-key").click()
            browser.wait_for_text(analyst, MODEL)
            analyst.find_element("id", "predict").click()
            browser.wait_for_text(analyst, "chance of churn")
            assert analyst.find_elements("css selector", "#explanation .bar[data-feature]")
        with browser.open_browser(insecure=True) as anonymous:
            # Without the login the browser is refused (it would ask for the login): none of
            # what the same pages showed above.
            for path, marker in (("/", "Drift and quality reports"), ("/mlflow/#/models", MODEL),
                                 ("/prefect/deployments", "drift-check"),
                                 ("/prometheus/", "Alerts")):
                anonymous.get(base + path)
                time.sleep(2)
                assert marker not in anonymous.page_source, path
    except browser.BrowserMissing as exc:
        pytest.fail(str(exc))


def test_the_demo_profiles_simulator_sends_traffic_and_feedback_over_the_network(
    stack: ComposeStack,
) -> None:
    rows_before = int(stack.psql("monitoring", "SELECT count(*) FROM predictions"))
    done = stack.compose("--profile", "demo", "run", "--rm", "--no-deps", "simulator",
                         "python", "-m", "simulation.traffic", "--url", "http://predictor:9696",
                         "--rows", "200", "--feedback", timeout=300)
    assert "ok 200" in done.stdout and "failed 0" in done.stdout, done.stdout
    assert "feedback 200" in done.stdout, done.stdout
    wait_for("the simulator's predictions in the log", lambda: True if int(stack.psql(
        "monitoring", "SELECT count(*) FROM predictions")) >= rows_before + 200 else None,
        timeout=60)


# --- a placeholder secret stops the stack before anything exists -------------------------------

def test_a_placeholder_secret_stops_the_stack_before_any_database_exists(
    tmp_path: Path,
) -> None:
    refused = start_stack(tmp_path, ADMIN_PASSWORD="change-me-before-going-live")
    try:
        done = refused.compose("up", "-d", "--wait", "--wait-timeout", "300", timeout=420,
                               check=False)
        assert done.returncode != 0
        assert "ADMIN_PASSWORD is a placeholder" in refused.logs("config-check")
        states = {c["Service"]: c["State"] for c in refused.containers()}
        assert states["config-check"] == "exited"
        # PostgreSQL never started, so its data folder is empty: no database, no role.
        assert states.get("postgres", "created") == "created", states
        assert states.get("setup", "created") == "created", states
        volume = f"{refused.project}_pgdata"
        if subprocess.run(["docker", "volume", "inspect", volume], capture_output=True,
                          check=False).returncode == 0:
            listing = subprocess.run(
                ["docker", "run", "--rm", "-v", f"{volume}:/data",
                 "onebox-standin/debian:bookworm", "ls", "-A", "/data"],
                capture_output=True, text=True, check=True)
            assert listing.stdout.strip() == "", listing.stdout
    finally:
        refused.down(volumes=True)


def test_no_secret_appears_in_any_log(stack: ComposeStack) -> None:
    """Every service's output, start to now: no password, key or token in it (the
    people's user name, the key ids and the URLs are fine)."""
    from operations.generate_env import SECRETS

    logs = stack.compose("logs", "--no-color", timeout=120).stdout
    assert len(logs) > 10_000  # the services did say things
    secrets = {name: stack.env[name] for name in SECRETS if name != "PREDICTOR_API_KEYS"}
    # The key records are hashes, but their hashes are not for logs either.
    secrets |= {f"record {i}": record.rsplit(":", 1)[1]
                for i, record in enumerate(stack.env["PREDICTOR_API_KEYS"].split(","))}
    leaked = sorted(name for name, value in secrets.items() if value in logs)
    assert not leaked, f"in the logs: {leaked}"


# --- another business, chosen in .env: a number to predict ------------------------------------

FLIGHTS = {"SCHEMA_PATH": "core/schemas/flights.yaml", "MODEL_NAME": "flight-prices",
           "MLFLOW_EXPERIMENT": "onebox-flights"}


CHURN_ROWS = ("SELECT count(*), count(actual), md5(string_agg(prediction_id::text || "
              "coalesce(actual::text, '-'), ',' ORDER BY prediction_id)) FROM predictions "
              f"WHERE model_name = '{MODEL}'")


@pytest.mark.business_switch
def test_down_then_up_on_flight_prices_keeps_churn_and_runs_the_loop_for_a_number(
    stack: ComposeStack,
) -> None:
    """`down`, .env switched to the flight-price business (its schema, model, experiment),
    `up` again, as `make down; make up` would on the same volumes.  Churn's registry,
    predictions, feedback, reports and the front door's certificate are all kept; the
    bootstrap generates the fares' table and trains their first regressor; and a fare goes
    round the loop -- served, refused, labelled, monitored, reported.  (One bring-up for
    both: each took 70-110 s of the container track.)"""
    from core.schema import Schema
    from simulation.demo_tables import demo_table
    from simulation.traffic import records_from_frame

    send_traffic(stack, 200, seed=23, feedback=True)
    stack.wait_for_flow_run(stack.quick_run("report/report"))
    wait_for("the log written", lambda: True if stack.get("predictor", "/health").json()[
        "prediction_log"]["backlog"] == 0 else None, timeout=60)
    before = {"versions": stack.model_versions(MODEL), "champion": stack.alias(MODEL, "champion"),
              "rows": stack.psql("monitoring", CHURN_ROWS),
              "index": stack.get("reports", "/").text, "cert": stack.ca_file.read_text()}
    assert before["rows"].split("|")[0] != "0"

    stack.compose("down", timeout=300)
    assert not stack.labelled("container")
    stack.set_env(**FLIGHTS)
    seconds = stack.up()
    print(f"\n[stack] down, then up on the same volumes with flight prices in .env: "
          f"{seconds:.0f} s (the bootstrap trained the fares' first model)")

    # Churn's state, untouched by the down, the up and the other business's first run.
    assert stack.model_versions(MODEL) == before["versions"]
    assert stack.alias(MODEL, "champion") == before["champion"]
    assert stack.psql("monitoring", CHURN_ROWS) == before["rows"]
    assert stack.ca_file.read_text() == before["cert"]  # the self-signed certificate is kept
    index = stack.get("reports", "/").text
    for report in sorted(set(re.findall(r'href="\.?/?([^"]+\.html)"', before["index"]))):
        assert report in index, report

    fares = FLIGHTS["MODEL_NAME"]
    assert stack.alias(fares, "champion") == "1"
    assert stack.model_versions(fares)["1"]["onebox.business"] == "regression 'price'"
    model = stack.get("predictor", "/model").json()
    assert (model["name"], model["task"], model["fast_path"]) == (fares, "regression", True)

    schema = Schema.load(ROOT / FLIGHTS["SCHEMA_PATH"])
    frame = demo_table(schema, 5, seed=3)
    records = records_from_frame(frame, schema)
    single = predict(stack, records[0])
    assert single.status_code == 200, single.text
    answer = single.json()
    assert set(answer) == {"prediction_id", "price", "interval", "model"}
    assert 500 <= answer["price"] <= 200_000 and answer["model"]["name"] == fares
    interval = answer["interval"]
    assert interval["low"] < answer["price"] < interval["high"] and interval["level"] == 0.9
    sheet = frame[schema.feature_names].to_csv(index=False)
    scored = stack.post("predictor", "/predict", data=sheet,
                        headers={**stack.key("predict"), "Content-Type": "text/csv"})
    assert scored.status_code == 200, scored.text
    assert scored.text.splitlines()[0].endswith(
        ",prediction_id,price_predicted,price_low,price_high")
    refused = predict(stack, {**records[0], "destination_city": "Goa"})
    assert refused.status_code == 422
    assert [p["field"] for p in refused.json()["problems"]] == ["destination_city"]
    too_dear = stack.post("predictor", "/feedback",
                          json={"prediction_id": answer["prediction_id"], "price": 9e9})
    assert too_dear.status_code == 422 and "price" in too_dear.text

    # A window of fares with their real prices: the exporter's live error against the
    # holdout's, in Prometheus; then a report of the window, on the front door.
    ids = send_traffic(stack, 300, seed=29, feedback=True,
                       schema_path=ROOT / FLIGHTS["SCHEMA_PATH"])
    labelled = stack.psql("monitoring", "SELECT count(actual) FROM predictions WHERE "
                          f"model_name = '{fares}' AND prediction_id = ANY('{{"
                          + ",".join(ids) + "}'::uuid[])")
    assert labelled == "300"

    def live_error() -> dict[str, float] | None:
        figures = {}
        for name in ("onebox_live_rmse", "onebox_reference_rmse", "onebox_live_labels",
                     "onebox_live_interval_coverage", "onebox_interval_level"):
            result = stack.get("prometheus", "/api/v1/query",
                               params={"query": name}).json()["data"]["result"]
            if not result:
                return None
            figures[name] = float(result[0]["value"][1])
        return figures if figures["onebox_live_labels"] >= 300 else None

    figures = wait_for("the live RMSE of the labelled fares in Prometheus", live_error,
                       timeout=180, interval=3)
    # Fresh rows of the training table's process: the live error is the holdout's kind.
    assert 0.5 < figures["onebox_live_rmse"] / figures["onebox_reference_rmse"] < 2, figures
    # ... and the answered intervals held the real fares about as often as their level
    # says (300 labels: three binomial standard errors of 0.9 are 0.052).
    assert figures["onebox_interval_level"] == 0.9
    assert 0.84 <= figures["onebox_live_interval_coverage"] <= 0.98, figures
    stack.wait_for_flow_run(stack.quick_run("report/report"))
    index = stack.get("reports", "/").text
    assert f"{fares} v1" in index and f"models/{fares}-v1.html" in index
    quality = sorted(set(re.findall(r'href="\.?/?(quality-[^"]+\.html)"', index)))
    assert quality, index[:2000]
    report = stack.get("reports", "/" + quality[-1])
    assert report.status_code == 200 and len(report.content) > 100_000
    card = stack.get("reports", f"/models/{fares}-v1.html").text
    assert f"{fares} v1" in card and "INR" in card and "RMSE" in card
    assert "Each answer carries a 90% interval" in card
