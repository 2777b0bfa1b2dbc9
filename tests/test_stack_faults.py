"""Nothing lost: faults injected into the running compose stack (`docker compose stop`,
`up --force-recreate`, a crash of the predictor's process), and a backup restored into an
emptied stack.  Each test prints what it sent, what was answered, and what was lost.

Marker `stack` (a Docker engine with compose v2; `make test-prereqs`).  The stack is this
module's own, started from empty volumes; each test puts back what it broke, so they do not
depend on their order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.schema import Schema
from simulation.generator import generate
from simulation.traffic import records_from_frame
from testkit.load import SteadyLoad
from testkit.stacks import (
    ROOT,
    ComposeStack,
    EngineLease,
    send_traffic,
    start_stack,
    wait_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(2400),
              pytest.mark.usefixtures("engine_lease")]

MODEL = "churn-classifier"
POLL_SECONDS = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          engine_lease: EngineLease) -> Iterator[ComposeStack]:
    stack = start_stack(tmp_path_factory.mktemp("faults"), N_TRIALS="3",
                        MODEL_POLL_SECONDS=str(POLL_SECONDS), DRIFT_INTERVAL_SECONDS="5",
                        DRIFT_WINDOW_ROWS="1000", TRAIN_REGISTRY_RETRIES="12",
                        TRAIN_REGISTRY_RETRY_SECONDS="10")
    stack.down(volumes=True)
    try:
        seconds = stack.up()
        print(f"\n[faults] {stack.project}: up from empty volumes in {seconds:.0f} s")
        yield stack
    finally:
        stack.down(volumes=True)
        # Volumes only a test's extra compose file declared (a failed test's leftovers).
        for volume in stack.labelled("volume"):
            subprocess.run(["docker", "volume", "rm", "-f", volume], check=False,
                           capture_output=True)
        left = stack.labelled("container") + stack.labelled("volume")
        assert not left, f"the fault tests left containers or volumes behind: {left}"


LONG_RUNNING = ("postgres", "mlflow", "prefect-server", "prefect-worker", "predictor",
                "drift-exporter", "prometheus", "alertmanager", "gateway")


def all_healthy(stack: ComposeStack) -> bool | None:
    states = {c["Service"]: c for c in stack.containers(all_states=False)}
    return True if all(states.get(name, {}).get("Health") == "healthy"
                       for name in LONG_RUNNING) else None


@pytest.fixture(autouse=True)
def healthy(stack: ComposeStack) -> None:
    """Each test starts on a whole stack, whatever the one before it broke."""
    wait_for("every service healthy", lambda: all_healthy(stack), timeout=600, interval=2)


def start_healthy(stack: ComposeStack, service: str) -> None:
    """Start a stopped service again and wait until its health check passes."""
    stack.compose("up", "-d", "--no-deps", "--wait", service, timeout=600)


def health(stack: ComposeStack) -> dict:
    return stack.get("predictor", "/health").json()


def log_settled(stack: ComposeStack, timeout: float = 180) -> None:
    """Wait until nothing is queued or spooled any more (/health: both workers asked)."""
    def settled() -> bool | None:
        seen = [health(stack)["prediction_log"] for _ in range(10)]
        return True if all(s["backlog"] == 0 and s["spooled_rows"] == 0
                           and s["store_available"] for s in seen) else None
    wait_for("the prediction log written and the spool empty", settled, timeout, interval=1)


def rows_for(stack: ComposeStack, ids: list[str]) -> tuple[int, int]:
    """(rows, distinct ids) in the prediction log among `ids`."""
    if not ids:
        return 0, 0
    array = "{" + ",".join(ids) + "}"
    sql = ("SELECT count(*), count(DISTINCT prediction_id) FROM predictions "
           f"WHERE prediction_id = ANY('{array}'::uuid[]);")
    done = subprocess.run(stack.compose_argv("exec", "-T", "postgres", "psql", "-U", "postgres",
                                             "-d", "monitoring", "-v", "ON_ERROR_STOP=1",
                                             "-tA", "-f", "-"),
                          input=sql, capture_output=True, text=True, timeout=120, check=True)
    rows, distinct = done.stdout.strip().split("|")
    return int(rows), int(distinct)


def assert_every_answer_logged_once(stack: ComposeStack, load: SteadyLoad, what: str) -> None:
    log_settled(stack)
    rows, distinct = rows_for(stack, load.answered)
    lost = len(load.answered) - distinct
    print(f"\n[faults] {what}: {load.summary()}; logged {distinct} (rows {rows}); lost {lost}")
    assert rows == distinct == len(load.answered), (rows, distinct, len(load.answered))


# --- PostgreSQL away ---------------------------------------------------------------------------

def test_postgres_stopped_30_s_under_load_fails_no_request_and_loses_no_row(
    stack: ComposeStack,
) -> None:
    with SteadyLoad.through_front_door(stack) as load:
        load.wait_for(100)  # the traffic flowing, then the fault
        stack.compose("stop", "postgres")
        time.sleep(30)  # the outage itself
        away = health(stack)["prediction_log"]
        start_healthy(stack, "postgres")
        # Still under load while the predictor finds the store again and replays.
        wait_for("the predictor writing to PostgreSQL again", lambda: True if all(
            health(stack)["prediction_log"]["store_available"] for _ in range(6)) else None,
            timeout=120, interval=1)
        load.wait_for(100)
    assert not load.failures, load.failures[:5]
    assert not away["store_available"] and away["spooled_rows"] > 0, away
    assert_every_answer_logged_once(stack, load, "PostgreSQL stopped 30 s")


def test_the_predictor_recreated_while_rows_are_spooled_loses_none(stack: ComposeStack) -> None:
    stack.compose("stop", "postgres")
    try:
        with SteadyLoad.through_front_door(stack) as load:
            load.wait_for(300)  # answered with the store away: spooled
        spooled = health(stack)["prediction_log"]["spooled_rows"]
        # A new container (the old one removed): the spool is on a volume, so it outlives it.
        stack.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "predictor",
                      timeout=300)
        after_recreate = health(stack)["prediction_log"]["spooled_rows"]
    finally:
        start_healthy(stack, "postgres")
    assert not load.failures, load.failures[:5]
    assert spooled > 0 and after_recreate >= spooled, (spooled, after_recreate)
    print(f"\n[faults] {spooled} rows spooled before the predictor was recreated, "
          f"{after_recreate} found by the new container")
    assert_every_answer_logged_once(stack, load, "predictor recreated with rows spooled")


def exporter(stack: ComposeStack, path: str) -> dict | str:
    """The drift exporter's /health (parsed) or /metrics, from inside its container (it is
    not behind the front door)."""
    probe = ("import urllib.request, urllib.error\n"
             "try:\n"
             f"    body = urllib.request.urlopen('http://localhost:8085{path}',\n"
             "                                  timeout=10).read()\n"
             "except urllib.error.HTTPError as error:\n"
             "    body = error.read()\n"
             "print(body.decode())")
    text = stack.compose("exec", "-T", "drift-exporter", "python", "-c", probe).stdout
    return json.loads(text) if path == "/health" else text


# --- MLflow away -------------------------------------------------------------------------------

def test_mlflow_stopped_the_predictor_serves_and_a_restarted_one_serves_its_local_copy(
    stack: ComposeStack,
) -> None:
    champion = stack.alias(MODEL, "champion")
    send_traffic(stack, 300, seed=61, feedback=False)  # a window for the exporter
    # Figures over these rows: an "ok" computed before the predictor's log reached
    # PostgreSQL covers an empty window (no per-feature scores to keep).
    computed = wait_for("the exporter's figures over the window", lambda: (
        h if (h := exporter(stack, "/health"))["status"] == "ok" and h["window_rows"] >= 300
        else None), timeout=120)
    stack.compose("stop", "mlflow")
    try:
        with SteadyLoad.through_front_door(stack) as load:
            time.sleep(POLL_SECONDS * 3)  # several champion checks fail meanwhile
        assert not load.failures, load.failures[:5]
        # The exporter cannot reach the champion: it keeps its last figures and says so.
        away = wait_for("the exporter saying its figures are stale", lambda: (
            h if (h := exporter(stack, "/health"))["status"] in ("stale", "failing")
            else None), timeout=120)
        assert away["computed_at"] >= computed["computed_at"]
        assert "onebox_feature_drift_score{" in exporter(stack, "/metrics")
        # A predictor started while MLflow is away: its copy on the model-cache volume.
        stack.compose("restart", "predictor", timeout=300)
        restarted = wait_for("the restarted predictor answering", lambda: health(stack)
                             if health(stack)["model"]["version"] else None, timeout=180)
        assert restarted["model_source"] == "local-cache", restarted
        assert restarted["model"]["version"] == champion
        assert restarted["registry_error"], restarted
        with SteadyLoad.through_front_door(stack) as served_from_cache:
            served_from_cache.wait_for(100)
        assert not served_from_cache.failures, served_from_cache.failures[:5]
    finally:
        start_healthy(stack, "mlflow")
    # MLflow back: the poller confirms the champion, and /health says where it came from.
    wait_for("every worker back on the registry", lambda: True if all(
        h["model_source"] == "registry" and not h["registry_error"]
        for h in (health(stack) for _ in range(6))) else None, timeout=240, interval=2)
    print(f"\n[faults] MLflow stopped: {load.summary()}; a restarted predictor served "
          f"v{champion} from its local copy: {served_from_cache.summary()}")


# --- Prefect's server restarted --------------------------------------------------------------

def test_the_prefect_server_restarted_the_worker_reconnects_and_no_run_is_lost_or_doubled(
    stack: ComposeStack,
) -> None:
    send_traffic(stack, 100, seed=51, feedback=False)  # what a report reads
    # The schedule's upcoming runs removed: only a scheduler working after the restart
    # makes them again.
    deployment_id = stack.deployment("report/report")["id"]
    for run in scheduled_runs(stack, deployment_id):
        stack.delete("prefect-server", f"/api/flow_runs/{run['id']}").raise_for_status()
    assert scheduled_runs(stack, deployment_id) == []
    # A run created just before the restart, and one after: each completes, once.
    before = stack.quick_run("report/report")
    restarting_at = datetime.now(UTC)  # containers share the host's clock
    stack.compose("restart", "prefect-server", timeout=300)
    wait_for("Prefect's API back", lambda: True if stack.get(
        "prefect-server", "/api/health").status_code == 200 else None, timeout=180)
    upcoming = wait_for("the schedule's runs made again", lambda: scheduled_runs(
        stack, deployment_id) or None, timeout=300, interval=5)
    assert all(datetime.fromisoformat(run["created"]) > restarting_at for run in upcoming), (
        restarting_at, [run["created"] for run in upcoming])
    after = stack.quick_run("report/report")
    for run_id in (before, after):
        stack.wait_for_flow_run(run_id)
    runs = stack.post("prefect-server", "/api/flow_runs/filter", json={
        "flow_runs": {"id": {"any_": [before, after]}}}).json()
    assert sorted(r["id"] for r in runs) == sorted([before, after])
    assert all(r["run_count"] == 1 for r in runs), [(r["name"], r["run_count"]) for r in runs]
    worker = {c["Service"]: c for c in stack.containers()}["prefect-worker"]
    assert worker["State"] == "running", worker
    print(f"\n[faults] Prefect server restarted: runs created before and after it each "
          f"completed once; the worker ({worker['Status']}) reconnected by itself; the "
          f"scheduler made {len(upcoming)} upcoming report runs again")


def scheduled_runs(stack: ComposeStack, deployment_id: str) -> list[dict]:
    answer = stack.post("prefect-server", "/api/flow_runs/filter", json={
        "flow_runs": {"deployment_id": {"any_": [deployment_id]},
                      "state": {"type": {"any_": ["SCHEDULED"]}}}})
    answer.raise_for_status()
    return [run for run in answer.json() if run["auto_scheduled"]]  # not quick runs


def test_the_worker_killed_mid_train_leaves_a_crashed_run_no_new_champion_and_works_again(
    stack: ComposeStack,
) -> None:
    """SIGKILL to the worker's container (its flow run's process dies with it) while a train
    run is running: the run's heartbeats stop and the deploy step's automation marks it
    Crashed (not Running for ever); the champion does not move to anything it left
    behind; the restarted worker runs the next train to completion."""
    champion = stack.alias(MODEL, "champion")
    versions = stack.model_versions(MODEL)
    run_id = stack.quick_run("train/train", {"promotion_margin": -1.0})
    wait_for("the train run running", lambda: True if stack.get(
        "prefect-server", f"/api/flow_runs/{run_id}").json()["state"]["type"] == "RUNNING"
        else None, timeout=180, interval=0.5)
    time.sleep(3)  # into the search
    worker = container_id(stack, "prefect-worker")
    subprocess.run(["kill", "-KILL", inspect(worker, "{{.State.Pid}}")], check=True)
    killed_at = time.monotonic()

    def crashed() -> dict | None:
        run = stack.get("prefect-server", f"/api/flow_runs/{run_id}").json()
        return run if run["state"]["type"] not in ("RUNNING", "PENDING", "SCHEDULED") else None

    run = wait_for("the killed run marked", crashed, timeout=400, interval=3)
    seconds = time.monotonic() - killed_at
    assert run["state"]["type"] == "CRASHED", run["state"]
    assert stack.alias(MODEL, "champion") == champion
    left = {v: tags for v, tags in stack.model_versions(MODEL).items() if v not in versions}
    assert all("gate.decision" not in tags for tags in left.values()), left
    # The restarted worker takes the next run.
    stack.wait_for_flow_run(stack.quick_run("train/train", {"promotion_margin": -1.0}))
    promoted = max(stack.model_versions(MODEL), key=int)
    assert stack.alias(MODEL, "champion") == promoted != champion
    print(f"\n[faults] worker killed mid-train: run {run['name']} marked "
          f"{run['state']['type']} {seconds:.0f} s later ({run['state']['message']!r}); "
          f"versions it left: {sorted(left) or 'none'}; champion stayed v{champion}; the next "
          f"run promoted v{promoted}")


# --- everything restarted ----------------------------------------------------------------------

def prometheus_samples(stack: ComposeStack) -> float:
    """Samples of the scrape targets' `up` kept by Prometheus over the last hour."""
    answer = stack.get("prometheus", "/api/v1/query",
                       params={"query": "sum(count_over_time(up[1h]))"}).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_a_restart_of_every_container_loses_nothing(stack: ComposeStack) -> None:
    send_traffic(stack, 200, seed=41, feedback=True)
    before, cutoff = snapshot(stack)
    samples = prometheus_samples(stack)
    assert samples > 0
    stack.compose("restart", timeout=600)
    stack.compose("up", "-d", "--wait", "--wait-timeout", "600", timeout=660)
    stack.fetch_ca()
    after, _ = snapshot(stack, cutoff)
    for key in before:
        assert after[key] == before[key], (key, before[key], after[key])
    kept = prometheus_samples(stack)
    print(f"\n[faults] docker compose restart: registry, {before['rows'].split('|')[0]} "
          f"prediction rows, reports and the champion kept; Prometheus samples {samples:.0f} "
          f"before, {kept:.0f} after")
    assert kept >= samples


def restart_docker_daemon() -> float:
    """Stop the Docker engine (SIGTERM: it stops every container) and start it again as
    `make test-prereqs` does; returns the seconds the engine was away."""
    pid = int(Path("/var/run/docker.pid").read_text())
    stopped_at = time.monotonic()
    os.kill(pid, 15)
    wait_for("dockerd stopped", lambda: True if not Path(f"/proc/{pid}").exists() else None,
             timeout=180, interval=0.5)
    subprocess.run(["bash", "-c", "setsid nohup dockerd >>/var/log/dockerd.log 2>&1 "
                    "</dev/null &"], check=True)
    wait_for("dockerd answering", lambda: True if subprocess.run(
        ["docker", "info"], capture_output=True, check=False).returncode == 0 else None,
        timeout=120, interval=0.5)
    return time.monotonic() - stopped_at


@pytest.mark.engine_restart
def test_a_stop_and_start_of_the_docker_daemon_loses_nothing(stack: ComposeStack,
                                                            engine_lease: EngineLease) -> None:
    """The engine stopped (a host reboot, an engine upgrade): every container stops with it,
    and its restart policy brings the stack back when the engine starts -- nobody runs
    `up` -- with everything it had."""
    send_traffic(stack, 200, seed=71, feedback=True)
    before, cutoff = snapshot(stack)
    samples = prometheus_samples(stack)
    with engine_lease.exclusive():  # no other suite's stack is up meanwhile
        away = restart_docker_daemon()
    started = time.monotonic()

    wait_for("every service back and healthy by its restart policy",
             lambda: all_healthy(stack), timeout=600,
             interval=2)
    after, _ = snapshot(stack, cutoff)
    for key in before:
        assert after[key] == before[key], (key, before[key], after[key])
    assert prometheus_samples(stack) >= samples
    print(f"\n[faults] Docker engine stopped and started ({away:.0f} s away): the stack was "
          f"back and healthy {time.monotonic() - started:.0f} s later by its restart policy, "
          f"with its registry, {before['rows'].split('|')[0]} rows, reports and champion")


def flow_run_logs(stack: ComposeStack, run_id: str) -> str:
    answer = stack.post("prefect-server", "/api/logs/filter", json={
        "logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
    return "\n".join(entry["message"] for entry in answer.json())


def test_a_train_run_with_mlflow_away_says_so_retries_and_completes_once_it_is_back(
    stack: ComposeStack,
) -> None:
    stack.compose("stop", "mlflow")
    try:
        run_id = stack.quick_run("train/train")
        said = wait_for("the run saying MLflow is away", lambda: next(
            (line for line in flow_run_logs(stack, run_id).splitlines()
             if "does not answer" in line), None), timeout=180, interval=2)
        assert "http://mlflow:5051" in said, said
        state = stack.get("prefect-server", f"/api/flow_runs/{run_id}").json()["state"]
        assert state["type"] == "RUNNING", state  # retrying, not failed
    finally:
        start_healthy(stack, "mlflow")
    run = stack.wait_for_flow_run(run_id, timeout=600)
    retries = flow_run_logs(stack, run_id).count("does not answer")
    print(f"\n[faults] train with MLflow stopped: the run said {said.strip()[:100]!r}, "
          f"retried ({retries} attempts failed), and completed once MLflow was back "
          f"({run['state']['type']})")


def test_the_spool_disk_full_with_postgres_away_answers_every_request_and_counts_drops(
    stack: ComposeStack,
) -> None:
    """The stated policy, on the running stack: PostgreSQL away and the spool's disk (a
    256 KiB tmpfs here) full -- every request is still answered; up to 20,000 rows per
    worker wait in memory, past that rows are dropped and counted (/health, metrics); when
    PostgreSQL is back, what memory held is written."""
    small = dataclasses.replace(stack, extra_files=("tests/stack/compose.small-spool.yml",))
    small.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "predictor",
                  timeout=300)
    schema = Schema.load()
    records = records_from_frame(generate(500, 81, schema=schema), schema)
    stack.compose("stop", "postgres")
    try:
        answered: list[str] = []
        for _ in range(120):  # 60,000 rows in 500-row batches: more than disk and memory
            answer = stack.post("predictor", "/predict", json=records)
            assert answer.status_code == 200, answer.text
            answered += [p["prediction_id"] for p in answer.json()["predictions"]]
        seen = [health(stack)["prediction_log"] for _ in range(10)]
        full = next(s for s in seen if s["spool_error"])
        assert "No space left" in full["spool_error"], full
        dropped = stack.predictor_metric("onebox_prediction_log_dropped_rows_total")
        assert dropped > 0
        assert stack.predictor_metric("onebox_prediction_log_spool_writable") == 0
    finally:
        start_healthy(stack, "postgres")
    log_settled(stack, timeout=300)  # memory and spool written once PostgreSQL is back
    dropped = stack.predictor_metric("onebox_prediction_log_dropped_rows_total")  # final
    rows, distinct = rows_for(stack, answered)
    print(f"\n[faults] spool disk full with PostgreSQL away: {len(answered)} rows answered "
          f"(every request 200), {dropped:.0f} dropped and counted, {distinct} logged once "
          f"PostgreSQL was back; {full['spool_error'][:60]!r} on /health")
    assert rows == distinct == len(answered) - dropped, (rows, distinct, len(answered), dropped)
    # The predictor back on its own spool volume; the small one goes (the stack's own
    # `down -v` does not know it).
    stack.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "predictor",
                  timeout=300)
    subprocess.run(["docker", "volume", "rm", f"{stack.project}_small-spool"], check=True,
                   capture_output=True)


# --- the predictor crashes -----------------------------------------------------------------

def container_id(stack: ComposeStack, service: str) -> str:
    return stack.compose("ps", "--quiet", service).stdout.strip()


def inspect(container: str, template: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", template, container],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_predictor_killed_under_load_is_restarted_and_its_failures_are_bounded(
    stack: ComposeStack,
) -> None:
    """A crash (SIGKILL to gunicorn's master, PID 1 of the container, from the host: the
    kernel then ends its workers): the restart policy brings it back.  Bound: requests fail
    only between the kill and the first answer of the new process.  Every answered
    prediction is logged, once: what the killed workers had not written yet is in their
    journals on the spool volume, which the new workers replay (server/journal.py)."""
    container = container_id(stack, "predictor")
    restarts = int(inspect(container, "{{.RestartCount}}"))
    with SteadyLoad.through_front_door(stack) as load:
        load.wait_for(100)
        killed_at = time.monotonic()
        subprocess.run(["kill", "-KILL", inspect(container, "{{.State.Pid}}")], check=True)

        def answering_again() -> float | None:
            # The first answer after the last failure: the new process serving.
            last_failure = max((t for t, _ in load.failures), default=killed_at)
            later = [a.at for a in load.answers if a.at > last_failure]
            return later[0] if later and time.monotonic() - later[0] > 3 else None

        back_at = wait_for("answers from the restarted predictor", answering_again,
                           timeout=180, interval=0.5)
        load.wait_for(100)
    assert int(inspect(container, "{{.RestartCount}}")) == restarts + 1
    outage = back_at - killed_at
    assert all(killed_at <= t <= back_at for t, _ in load.failures), load.failures[:5]
    bound = load.threads * (outage * load.rate_per_thread + 1)
    assert len(load.failures) <= bound
    log_settled(stack)
    rows, distinct = rows_for(stack, load.answered)
    lost = len(load.answered) - distinct
    print(f"\n[faults] predictor killed: {load.summary()}; answering again after {outage:.1f} "
          f"s; failed {len(load.failures)} (bound {bound:.0f}: every client, for the outage); "
          f"answered but never logged {lost}; first failure: "
          f"{(load.failures or [(0, '-')])[0][1][:120]!r}")
    assert rows == distinct
    assert lost == 0


# --- backup and restore ---------------------------------------------------------------------

def make(stack: ComposeStack, target: str, backup_dir: Path, **variables: str,
         ) -> subprocess.CompletedProcess:
    """The Makefile's own target, pointed at this stack."""
    compose = shlex.join(stack.compose_argv())
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target,
                           f"COMPOSE={compose}", f"BACKUP_DIR={backup_dir}",
                           *(f"{k}={v}" for k, v in variables.items())],
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, f"make {target}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def snapshot(stack: ComposeStack, cutoff: str | None = None) -> tuple[dict, str]:
    """What a restore (or a restart) must bring back, as a user would check it, and the
    time it was taken: the prediction rows compared are those logged by then (the probe
    below adds one each time)."""
    log_settled(stack)
    cutoff = cutoff or stack.psql("monitoring", "SELECT now()")
    rows = ("SELECT count(*), count(actual), md5(string_agg(prediction_id::text || ':' || "
            "coalesce(actual::text, '-') || ':' || coalesce(feedback_by, '-') || ':' || "
            "probability::text, ',' ORDER BY prediction_id)) FROM predictions "
            f"WHERE created_at <= '{cutoff}'")
    record = records_from_frame(generate(1, 99, schema=Schema.load()), Schema.load())[0]
    answer = stack.post("predictor", "/predict", json=record).json()
    return {
        "versions": stack.model_versions(MODEL),
        "champion": stack.alias(MODEL, "champion"),
        "rows": stack.psql("monitoring", rows),
        "reports": stack.compose("exec", "-T", "prefect-worker", "sh", "-c",
                                 "cd /var/lib/onebox/reports && find . -type f | sort | "
                                 "xargs md5sum").stdout,
        "served": (answer["model"]["version"], answer["churn_probability"]),
        "deployments": sorted(d["name"] for d in stack.post(
            "prefect-server", "/api/deployments/filter", json={}).json()),
    }, cutoff


def test_a_backup_restored_into_an_emptied_stack_brings_everything_back(
    stack: ComposeStack, tmp_path: Path,
) -> None:
    send_traffic(stack, 300, seed=31, feedback=True)
    stack.wait_for_flow_run(stack.quick_run("train/train", {"promotion_margin": -1.0}))
    wait_for("the predictor on the new champion", lambda: True if health(stack)["model"][
        "version"] == stack.alias(MODEL, "champion") else None, timeout=120)
    send_traffic(stack, 200, seed=32, feedback=True)
    # After the new champion served: a report needs the champion's own predictions.
    stack.wait_for_flow_run(stack.quick_run("report/report"))
    before, cutoff = snapshot(stack)
    assert len(before["versions"]) >= 2 and before["reports"].strip()
    assert int(before["rows"].split("|")[1]) >= 500

    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    started = time.monotonic()
    make(stack, "backup", backup_dir)
    backup_seconds = time.monotonic() - started
    [archive] = sorted(backup_dir.glob("onebox-*.tar.gz"))
    assert (backup_dir / f"{archive.name}.sha256").exists()

    # A damaged archive is refused before anything is touched.
    damaged = backup_dir / "damaged.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (backup_dir / "damaged.tar.gz.sha256").write_text(
        (backup_dir / f"{archive.name}.sha256").read_text().replace(archive.name, damaged.name))
    refused = subprocess.run(stack.compose_argv("run", "--rm", "backup", "restore", damaged.name),
                             env={**os.environ, "BACKUP_DIR": str(backup_dir)},
                             capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode != 0 and "does not match its checksum" in refused.stderr, (
        refused.stdout[-2000:], refused.stderr[-2000:])

    # Everything gone; a new stack (it trains a first champion of its own).
    stack.down(volumes=True)
    stack.up()
    assert stack.model_versions(MODEL).keys() == {"1"}

    started = time.monotonic()
    make(stack, "restore", backup_dir, ARCHIVE=str(archive))
    restore_seconds = time.monotonic() - started
    stack.fetch_ca()
    wait_for("the predictor on the restored champion", lambda: True if health(stack)["model"][
        "version"] == before["champion"] else None, timeout=120)
    after, _ = snapshot(stack, cutoff)
    print(f"\n[faults] backup {archive.stat().st_size / 1e6:.1f} MB in {backup_seconds:.0f} s "
          f"(make backup, stack running); restore {restore_seconds:.0f} s (make restore: stop "
          f"writers, restore, up --wait); {len(before['versions'])} versions, rows "
          f"{before['rows'].split('|')[:2]}")
    for key in before:
        assert after[key] == before[key], (key, before[key], after[key])
