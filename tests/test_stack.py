"""`docker compose up`, for real: the stack built from the project's files, started from
empty volumes, and walked through its published ports the way its users walk it.

Marker `stack`: it needs a Docker engine with compose v2 (`make test-prereqs` installs and
starts them) and fails, never skips, without one.  Upstream images are replaced by stand-ins
built from Debian's packages (tests/stack/); Grafana has none and is not started.  The
passwords have @ / : % ? & in them, so every DSN the stack builds must encode them.

Each test brings what it needs (traffic, a report) and leaves the stack up, so they do not
depend on their order; the last step, `down -v` leaving nothing behind, is the fixture's
teardown.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
import yaml

from simulation.generator import generate
from tests import browser
from tests.compose_stack import ROOT, ComposeStack, build_standins, require_engine, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(2400)]

MODEL = "churn-classifier"
SERVICE_PACKAGES = {"core", "server", "simulation", "monitoring", "reporting", "orchestration"}
# Every long-running service `up --wait` must bring to healthy (all but Grafana).
LONG_RUNNING = {"postgres", "mlflow", "prefect-server", "prefect-worker", "predictor",
                "drift-exporter", "prometheus", "reports"}
ONE_OFF = {"setup", "bootstrap", "deploy"}
POLL_SECONDS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    try:
        require_engine()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    build_standins()
    stack = ComposeStack.create(
        tmp_path_factory.mktemp("stack"),
        # URL-special characters: setup, MLflow, Prefect and the prediction log must all
        # cope (a DSN written with the raw password breaks on the first one).
        POSTGRES_PASSWORD="adm@in/pg:1%?&x",
        MLFLOW_DB_PASSWORD="ml@flow/db:2%?&x",
        PREFECT_DB_PASSWORD="pre@fect/db:3%?&x",
        MONITORING_DB_PASSWORD="mon@itor/db:4%?&x",
        N_TRIALS="3",
        MODEL_POLL_SECONDS=str(POLL_SECONDS),
        DRIFT_INTERVAL_SECONDS="5",
        DRIFT_WINDOW_ROWS="1000",
    )
    stack.down(volumes=True)  # from nothing
    try:
        seconds = stack.up()
        print(f"\n[stack] {stack.project}: up --wait from empty volumes in {seconds:.0f} s "
              f"(images built as needed); ports {stack.ports}")
        yield stack
    finally:
        stack.down(volumes=True)
        left = stack.labelled("container") + stack.labelled("volume")
        assert not left, f"down -v left containers or volumes behind: {left}"


def predict(stack: ComposeStack, body: object) -> requests.Response:
    return stack.post("predictor", "/predict", json=body)


def send_traffic(stack: ComposeStack, rows: int, seed: int, *, feedback: bool) -> list[str]:
    """`rows` generated customers as 100-record batches; their outcomes as feedback."""
    from core.schema import Schema
    from simulation.traffic import records_from_frame

    schema = Schema.load()
    frame = generate(rows, seed, schema=schema)
    records = records_from_frame(frame, schema)
    ids = []
    for start in range(0, rows, 100):
        answer = predict(stack, records[start:start + 100])
        assert answer.status_code == 200, answer.text
        ids += [p["prediction_id"] for p in answer.json()["predictions"]]
    if feedback:
        for prediction_id, churn in zip(ids, frame[schema.target], strict=True):
            answer = stack.post("predictor", "/feedback",
                                json={"prediction_id": prediction_id, "churn": int(churn)})
            assert answer.status_code == 200, answer.text
    return ids


def served_versions(stack: ComposeStack, requests_: int = 12) -> set[str]:
    """The model versions a run of /predict requests was answered by (both workers)."""
    record = yaml.safe_load(README_EXAMPLE_BODY)
    return {predict(stack, record).json()["model"]["version"] for _ in range(requests_)}


# --- the README's own example ---------------------------------------------------------------

README = (ROOT / "README.md").read_text()
README_CURL = re.search(r"^curl -s -X POST localhost:9696/predict .*?\}'$", README,
                        re.M | re.S)
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
    image = images["predictor"]
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", image, "-c",
         "id -u; ls -A /app; ls -A /; test -e /app/.env && echo ENV-FILE || true"],
        capture_output=True, text=True, check=True, timeout=120)
    uid, *listing = done.stdout.split()
    assert uid != "0"
    app = set(listing) & (SERVICE_PACKAGES | {"tests", "benchmarks", ".git", ".venv", ".onebox"})
    assert app == SERVICE_PACKAGES, listing
    assert "ENV-FILE" not in listing


def test_bootstrap_trained_and_promoted_a_first_champion(stack: ComposeStack) -> None:
    versions = stack.model_versions(MODEL)
    assert versions["1"]["gate.decision"] == "promoted", versions["1"]
    assert stack.alias(MODEL, "champion") is not None
    health = stack.get("predictor", "/health").json()
    assert health["model_source"] == "registry"
    assert health["model"]["version"] == stack.alias(MODEL, "champion")
    assert "churn-classifier" in stack.logs("bootstrap")


def test_the_readme_curl_answers_a_batch_answers_and_a_bad_field_gets_its_422(
    stack: ComposeStack,
) -> None:
    command = README_CURL.group(0).replace("localhost:9696",
                                           f"127.0.0.1:{stack.ports['predictor']}")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                          check=True)
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


def test_feedback_lands_in_postgres(stack: ComposeStack) -> None:
    record = yaml.safe_load(README_EXAMPLE_BODY)
    prediction_id = predict(stack, record).json()["prediction_id"]
    # The log writes off the request path, in batches: wait until the row is there.
    wait_for("the prediction row", lambda: stack.psql(
        "monitoring", f"SELECT 1 FROM predictions WHERE prediction_id = '{prediction_id}'")
        or None, timeout=60)
    answer = stack.post("predictor", "/feedback", json={"prediction_id": prediction_id,
                                                         "churn": 1})
    assert answer.status_code == 200, answer.text
    row = stack.psql("monitoring", "SELECT actual, feedback_at IS NOT NULL FROM predictions "
                                   f"WHERE prediction_id = '{prediction_id}'")
    assert row == "1|t"


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


def test_a_report_quick_run_puts_a_report_on_the_nginx_index(stack: ComposeStack) -> None:
    send_traffic(stack, 400, seed=7, feedback=True)
    run = stack.wait_for_flow_run(stack.quick_run("report/report"))
    index = stack.get("reports", "/")
    assert index.status_code == 200, index.text
    links = re.findall(r'href="([^"]+\.html)"', index.text)
    assert links, index.text[:2000]
    report = stack.get("reports", "/" + links[0].lstrip("./"))
    assert report.status_code == 200 and len(report.content) > 100_000, links[0]
    assert run["state"]["type"] == "COMPLETED"
    # Read-only: nginx serves the reports, never writes them or shows other state.
    assert stack.post("reports", "/", data="x").status_code in (403, 405)
    assert stack.get("reports", "/data/churn.csv").status_code == 404


def test_prometheus_scrapes_both_targets_loads_the_rules_and_has_the_onebox_series(
    stack: ComposeStack,
) -> None:
    send_traffic(stack, 300, seed=11, feedback=False)

    def targets_up() -> dict | None:
        active = stack.get("prometheus", "/api/v1/targets").json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if health == {"predictor": "up", "drift-exporter": "up"} else None

    wait_for("both scrape targets up", targets_up, timeout=120, interval=2)

    rules = stack.get("prometheus", "/api/v1/rules").json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    written = {rule["alert"] for group in yaml.safe_load(
        (ROOT / "monitoring/prometheus/alerts.yml").read_text())["groups"]
        for rule in group["rules"]}
    assert loaded == written

    def series(query: str) -> list | None:
        result = stack.get("prometheus", "/api/v1/query", params={"query": query}).json()
        return result["data"]["result"] or None

    requests_ = wait_for("onebox_http_requests_total", lambda: series(
        'sum(onebox_http_requests_total{endpoint="/predict"})'), timeout=120, interval=2)
    assert float(requests_[0]["value"][1]) >= 3
    # The exporter's drift figures for the served window (computed every 5 s here).
    wait_for("onebox_drift_share", lambda: series("onebox_drift_share"), timeout=180, interval=3)
    wait_for("onebox_feature_drift_score", lambda: series("onebox_feature_drift_score"),
             timeout=60, interval=3)


def test_the_mlflow_and_prefect_uis_answer_a_browser_on_this_host(stack: ComposeStack) -> None:
    # MLflow refuses Host headers it does not know (403): a browser here sends localhost:PORT.
    for host in (f"localhost:{stack.ports['mlflow']}", f"127.0.0.1:{stack.ports['mlflow']}"):
        assert stack.get("mlflow", "/", headers={"Host": host}).status_code == 200, host
    assert stack.get("mlflow", "/", headers={"Host": "evil.example"}).status_code == 403

    # A real browser: the pages' scripts fetch their data from the APIs behind them.
    try:
        models_page = browser.render(stack.url("mlflow", "/#/models"))
        deployments_page = browser.render(stack.url("prefect-server", "/deployments"))
    except browser.BrowserMissing as exc:
        pytest.fail(str(exc))
    assert MODEL in models_page
    for name in ("train", "report", "drift-check"):
        assert re.search(rf">\s*{re.escape(name)}\s*<", deployments_page), name


def test_down_then_up_keeps_registry_predictions_feedback_and_reports(stack: ComposeStack,
                                                                     ) -> None:
    send_traffic(stack, 200, seed=23, feedback=True)
    stack.wait_for_flow_run(stack.quick_run("report/report"))
    count = ("SELECT count(*), count(actual), md5(string_agg(prediction_id::text || "
             "coalesce(actual::text, '-'), ',' ORDER BY prediction_id)) FROM predictions")
    wait_for("the log written", lambda: True if stack.get("predictor", "/health").json()[
        "prediction_log"]["backlog"] == 0 else None, timeout=60)
    before = {"versions": stack.model_versions(MODEL), "champion": stack.alias(MODEL, "champion"),
              "rows": stack.psql("monitoring", count), "index": stack.get("reports", "/").text}
    assert before["rows"].split("|")[0] != "0"

    stack.compose("down", timeout=300)
    assert not stack.labelled("container")
    seconds = stack.up()
    print(f"\n[stack] down, then up again on the same volumes: {seconds:.0f} s")

    assert stack.model_versions(MODEL) == before["versions"]
    assert stack.alias(MODEL, "champion") == before["champion"]
    assert stack.psql("monitoring", count) == before["rows"]
    assert stack.get("reports", "/").text == before["index"]
    health = stack.get("predictor", "/health").json()
    assert health["model"]["version"] == before["champion"]
    assert "nothing to do" in stack.logs("bootstrap")


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
