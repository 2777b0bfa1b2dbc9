"""Orchestration on a real Prefect server and worker (local processes): deployments are
registered idempotently, each runs as a quick run through the API, and does its job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from core import registry
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from core.store import PredictionRecord, PredictionStore
from monitoring.window import read_window
from operations import processes
from simulation.generator import SCENARIOS, generate
from simulation.traffic import records_from_frame
from tests.conftest import home_env, run_train_flow, set_up_store, settings_for
from tests.factories import write_training_csv

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, env={**os.environ, **env}, cwd=REPO_ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, schema: Schema) -> Iterator[dict]:
    """A Prefect server and a process worker, and a home with a trained champion."""
    root = tmp_path_factory.mktemp("orchestration")
    home = root / "home"
    write_training_csv(settings_for(home).data_path, schema, rows=3000)
    assert run_train_flow(home, trials=2)["promoted"]
    set_up_store(settings_for(home).prediction_store_url.get_secret_value())

    port = processes.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    prefect_env = {
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    server = _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], prefect_env, root / "prefect-server.log")
    worker = None
    try:
        processes.wait_until_healthy(f"{api_url}/health", server, timeout=120)
        worker_env = {**prefect_env, **home_env(home)}
        worker = _spawn([sys.executable, "-m", "prefect", "worker", "start", "--pool", "onebox",
                         "--type", "process"], worker_env, root / "prefect-worker.log")
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            stack = {"home": home, "api_url": api_url, "env": prefect_env, "root": root}
            register(stack)  # every test here runs the deployments, in whatever order
            yield stack
    finally:
        # A worker whose server is gone ignores SIGTERM; SIGINT stops it (STACK-NOTES).
        if worker is not None:
            worker.send_signal(2)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
        processes.stop(server)


def register(stack: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "operations.deploy"], cwd=REPO_ROOT,
                         env={**os.environ, **stack["env"]}, capture_output=True, text=True,
                         check=True, timeout=180)
    return out.stdout.splitlines()


async def _deployments() -> list:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_deployments()


def unresponsive_automations() -> list:
    import asyncio

    from prefect.client.orchestration import get_client

    from operations.deploy import UNRESPONSIVE_AUTOMATION

    async def read() -> list:
        async with get_client() as client:
            return await client.read_automations_by_name(UNRESPONSIVE_AUTOMATION)

    return asyncio.run(read())


def deployments() -> dict[str, object]:
    import asyncio

    return {d.name: d for d in asyncio.run(_deployments())}


def quick_run(name: str, **parameters: object):
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=parameters, timeout=600, poll_interval=2)
    assert run.state.is_completed(), f"{name}: {run.state.type} {run.state.message}"
    return run


def flow_runs_tagged(tag: str) -> list:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async def read() -> list:
        async with get_client() as client:
            return await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))

    return asyncio.run(read())


def flow_run_logs(flow_run_id) -> list[str]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            return [log.message for log in logs]

    return asyncio.run(read())


def wait_for_log_line(flow_run_id, text: str, timeout: float = 60.0) -> str:
    """The run's log line holding `text`, once it has reached the API.  A run's state is
    Completed before its last lines arrive: the flow's process sends its logs in batches
    (PREFECT_LOGGING_TO_API_BATCH_INTERVAL, 2 s) and sends what is left as it exits, after
    it has reported the final state.  So a test that reads the logs the moment the run is
    Completed can miss the last line; it waits for the line instead."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [message for message in flow_run_logs(flow_run_id) if text in message]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, (
            f"no log line with {text!r} within {timeout:.0f} s: {flow_run_logs(flow_run_id)}")
        time.sleep(0.5)


def log_predictions(home: Path, frame, schema: Schema, start: datetime) -> None:
    settings = settings_for(home)
    champion = registry.load_champion(registry.connect(settings), settings)
    frame = frame.assign(**{PREDICTION_COLUMN: champion.predict_proba(model_frame(schema, frame))})
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    store.log([PredictionRecord(str(uuid.uuid4()), settings.model_name, champion.version, rec,
                                float(p), int(p >= champion.threshold),
                                start + timedelta(milliseconds=i))
               for i, (rec, p) in enumerate(zip(records_from_frame(frame, schema),
                                                frame[PREDICTION_COLUMN], strict=True))])
    store.dispose()


def test_registering_twice_changes_nothing(stack: dict) -> None:
    first = deployments()  # registered once by the fixture
    register(stack)
    second = deployments()
    assert set(first) == {"train", "report", "drift-check"}
    assert {n: d.id for n, d in first.items()} == {n: d.id for n, d in second.items()}
    for name, deployment in second.items():
        assert len(deployment.schedules) == 1, name
        assert deployment.schedules[0].schedule.cron == first[name].schedules[0].schedule.cron
        assert deployment.work_pool_name == "onebox"
    assert second["train"].schedules[0].schedule.cron == "0 3 * * *"
    assert second["report"].schedules[0].schedule.cron == "0 */3 * * *"
    assert second["drift-check"].schedules[0].schedule.cron == "0 * * * *"
    # The automation that marks runs Crashed when their heartbeats stop: there, once.
    automations = unresponsive_automations()
    assert len(automations) == 1, automations
    [automation] = automations
    assert automation.enabled and automation.trigger.within.total_seconds() == 90
    assert automation.actions[0].state.value == "CRASHED"


def test_the_deploy_step_moves_a_stored_deployment_to_its_flows_new_module(stack: dict) -> None:
    """A stack made by an older image keeps its deployments (their ids, runs and
    schedules) when a flow's module moves -- the report and drift-check flows left
    orchestration/flows.py: the deploy step, run on every `up`, updates the stored
    entrypoint, and the worker runs the flow from its new module."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    before = deployments()
    old = {"report": "orchestration/flows.py:report",
           "drift-check": "orchestration/flows.py:drift_check"}

    async def store_the_old_entrypoints() -> None:
        async with get_client() as client:
            for name, entrypoint in old.items():
                await client.update_deployment(before[name].id,
                                               DeploymentUpdate(entrypoint=entrypoint))

    asyncio.run(store_the_old_entrypoints())
    assert {n: deployments()[n].entrypoint for n in old} == old
    register(stack)
    after = deployments()
    assert {n: d.id for n, d in after.items()} == {n: d.id for n, d in before.items()}
    assert after["report"].entrypoint == "orchestration/report.py:report"
    assert after["drift-check"].entrypoint == "orchestration/drift_check.py:drift_check"
    run = quick_run("report/report", window_rows=10)  # the worker loads the new module
    assert run.deployment_id == before["report"].id


def test_train_quick_run_registers_a_version_with_its_gate_decision(stack: dict) -> None:
    settings = settings_for(stack["home"])
    client = registry.connect(settings)
    before = {str(v.version) for v in client.search_model_versions(
        f"name='{settings.model_name}'")}
    quick_run("train/train", n_trials=2)
    after = {str(v.version): v for v in client.search_model_versions(
        f"name='{settings.model_name}'")}
    new = set(after) - before
    assert len(new) == 1
    tags = after[new.pop()].tags
    assert tags["gate.decision"] in ("promoted", "rejected") and tags["gate.reason"]


def test_report_quick_run_writes_a_report(stack: dict, schema: Schema) -> None:
    log_predictions(stack["home"], generate(600, 31, schema=schema), schema,
                    datetime.now(UTC) - timedelta(hours=3))
    quick_run("report/report", window_rows=500)
    reports = settings_for(stack["home"]).reports_dir
    assert len(list(reports.glob("drift-*.html"))) == 1
    assert (reports / "index.html").exists()


def test_report_right_after_a_promotion_completes_without_a_report(stack: dict) -> None:
    # A scheduled report between a promotion and the new champion's first prediction
    # has no window: the run completes (no red run in the UI), and writes nothing.
    settings = settings_for(stack["home"])
    client = registry.connect(settings)
    quick_run("train/train", n_trials=2, promotion_margin=-1.0)
    champion = registry.load_champion(client, settings)
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    try:
        assert read_window(store, champion, 500).empty
    finally:
        store.dispose()
    reports = settings.reports_dir
    before = sorted(reports.glob("drift-*.html"))
    run = quick_run("report/report", window_rows=500)  # asserts the run completed
    assert sorted(reports.glob("drift-*.html")) == before
    wait_for_log_line(run.id, f"nothing to report: no predictions of {champion.name} "
                              f"v{champion.version}")


def test_drift_check_starts_training_on_drift_and_not_on_clean_traffic(
    stack: dict, schema: Schema
) -> None:
    tag = "triggered-by-drift-check"
    log_predictions(stack["home"], generate(1200, 41, schema=schema), schema,
                    datetime.now(UTC) - timedelta(hours=2))
    quick_run("drift-check/drift-check", window_rows=1000)
    # A retrain would be created (through the API) before the drift-check run completes.
    assert flow_runs_tagged(tag) == []

    log_predictions(stack["home"], generate(1200, 42, SCENARIOS["economic_shift"], schema),
                    schema, datetime.now(UTC) - timedelta(hours=1))
    quick_run("drift-check/drift-check", window_rows=1000)
    started = flow_runs_tagged(tag)
    assert len(started) == 1
    assert "drift share" in started[0].parameters["trigger_reason"]
    # The triggered run trains and records why on its MLflow run.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = flow_runs_tagged(tag)[0]
        if run.state is not None and run.state.is_final():
            break
        time.sleep(2)
    assert run.state.is_completed(), run.state
    settings = settings_for(stack["home"])
    client = registry.connect(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    triggered = client.search_runs([experiment.experiment_id],
                                   "tags.`onebox.trigger_reason` LIKE '%drift share%'")
    assert len(triggered) == 1
