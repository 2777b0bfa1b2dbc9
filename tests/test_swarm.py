"""onebox on Docker Swarm, for real: docker-stack.yml deployed from nothing by `make
swarm-up`'s code on a single-node swarm, then walked by the users' paths of the compose
stack test (the same test functions, through the front door) and put through what Swarm
is for: scaling the predictor, rolling it to a new image and losing a replica, each
under steady load through the front door.

On this machine the routing mesh and virtual IPs do not work (no IPVS: STACK-NOTES), so the
stack uses what does everywhere: DNS round robin to the replicas (endpoint_mode dnsrr),
the front door re-resolving them, published in host mode.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import yaml

from swarm import deploy as swarm
from testkit.load import SteadyLoad
from testkit.stacks import (
    ROOT,
    EngineLease,
    SwarmStack,
    build_images,
    require_engine,
    swarm_state,
    wait_for,
)
from tests.factories import valid_record
from tests.test_stack import (  # the users' paths, run here against the swarm  # noqa: F401
    test_a_report_quick_run_puts_a_report_on_the_front_doors_index,
    test_a_train_quick_run_registers_a_version_with_its_gate_decision_and_the_predictor_follows,
    test_alertmanager_is_up_on_its_rendered_config_and_prometheus_sends_to_it,
    test_bootstrap_trained_and_promoted_a_first_champion,
    test_feedback_lands_in_postgres_with_its_sender,
    test_prefect_lists_the_three_deployments_on_the_worker_pool,
    test_prometheus_scrapes_every_target_loads_the_rules_and_has_the_onebox_series,
    test_the_first_champions_model_card_is_on_the_front_door,
    test_the_readme_curl_answers_a_batch_answers_and_a_bad_field_gets_its_422,
    test_the_uis_work_in_a_browser_through_the_front_door,
    test_tls_is_checked_against_the_certificate_the_stack_made,
)
from tests.test_stack_faults import log_settled, rows_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(2400),
              pytest.mark.usefixtures("engine_lease")]

MODEL = "churn-classifier"
REPLICAS = 2
ONE_SHOT = {"config-check", "setup", "bootstrap", "deploy", "alertmanager-config"}
PREDICT = 'endpoint="/predict"'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          engine_lease: EngineLease) -> Iterator[SwarmStack]:
    try:
        require_engine()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    build_images()
    made_swarm = swarm_state() == "inactive"
    stack = SwarmStack.create(
        tmp_path_factory.mktemp("swarm"),
        POSTGRES_PASSWORD="adm@in/pg:1%?&x-admin",  # URL-special, as in the compose test
        N_TRIALS="3", MODEL_POLL_SECONDS="3", DRIFT_INTERVAL_SECONDS="5",
        DRIFT_WINDOW_ROWS="1000", PREDICTOR_REPLICAS=str(REPLICAS))
    try:
        took = stack.deploy()
        print(f"\n[swarm] {stack.project}: deployed from nothing in {took:.0f} s "
              f"(swarm {'made for the test' if made_swarm else 'already there'})")
        yield stack
    finally:
        stack.remove()
        left = subprocess.run(["docker", "volume", "ls", "--quiet", "--filter",
                               f"label={swarm.STACK_LABEL}={stack.project}"],
                              capture_output=True, text=True, check=True).stdout.split()
        if made_swarm:
            with engine_lease.exclusive():  # leaving breaks other stacks' networks
                subprocess.run(["docker", "swarm", "leave", "--force"], check=True,
                               capture_output=True)
        assert not left, f"the stack's volumes are still there: {left}"


def served_releases(stack: SwarmStack, requests_: int = 30) -> set[str]:
    return {stack.get("predictor", "/health").json()["release"] for _ in range(requests_)}


def assert_logged_once(stack: SwarmStack, load: SteadyLoad) -> tuple[int, int]:
    """No answered prediction logged twice; returns (answered, logged)."""
    log_settled(stack)
    rows, distinct = rows_for(stack, load.answered)
    assert rows == distinct, (rows, distinct)
    return len(load.answered), distinct


# --- deployed from nothing ------------------------------------------------------------------

def test_every_service_runs_and_every_one_shot_step_completed_as_a_job(
    stack: SwarmStack,
) -> None:
    states = swarm.service_states(stack.project)
    assert set(states) == set(yaml.safe_load((ROOT / "docker-stack.yml").read_text())["services"])
    for name, replicas in states.items():
        if name in ONE_SHOT:
            assert replicas.endswith("(1/1 completed)"), (name, replicas)
        elif name == "grafana":
            assert replicas == "0/0"  # no stand-in for its image here
        else:
            assert swarm.converged(replicas) and not replicas.startswith("0/"), (name, replicas)
    assert len(stack.tasks("predictor")) == REPLICAS


def test_the_one_shot_jobs_run_again_change_nothing(stack: SwarmStack) -> None:
    """Swarm has no "completed successfully" dependency, and a job runs again whenever
    its spec changes (a new image, a new secret): a second run of each must find its work
    done.  Each job forced to run again, then: the same model versions and champion, the
    same deployments, the stack still serving."""
    versions = stack.model_versions(MODEL)
    champion = stack.alias(MODEL, "champion")
    deployments = {name: stack.deployment(name)["id"]
                   for name in ("train/train", "report/report", "drift-check/drift-check")}
    for job in sorted(ONE_SHOT):
        before = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter",
                                 f"label=com.docker.swarm.service.name={stack.service(job)}"],
                                capture_output=True, text=True, check=True).stdout.split()
        swarm.docker("service", "update", "--detach", "--force", stack.service(job))

        def ran_again(job: str = job, before: list[str] = before) -> bool | None:
            done = subprocess.run(
                ["docker", "ps", "--all", "--filter",
                 f"label=com.docker.swarm.service.name={stack.service(job)}",
                 "--format", "{{.ID}} {{.Status}}"],
                capture_output=True, text=True, check=True).stdout.splitlines()
            new = [line for line in done if line.split()[0] not in before]
            assert not any("Exited (" in line and "Exited (0)" not in line for line in new), new
            return True if any("Exited (0)" in line for line in new) else None

        wait_for(f"{job} run again", ran_again, timeout=300, interval=2)
    assert stack.model_versions(MODEL) == versions
    assert stack.alias(MODEL, "champion") == champion
    assert {name: stack.deployment(name)["id"] for name in deployments} == deployments
    assert stack.post("predictor", "/predict", json=valid_record()).status_code == 200


def test_no_secret_is_in_any_service_spec_or_log(stack: SwarmStack) -> None:
    """Secrets reach the services as Swarm secrets (files in /run/secrets), never in a
    service's spec, which any swarm manager shows (`docker service inspect`)."""
    from operations.generate_env import SECRETS

    services = [stack.service(name) for name in swarm.service_states(stack.project)]
    specs = subprocess.run(["docker", "service", "inspect", *services], capture_output=True,
                           text=True, check=True).stdout
    logs = "".join(stack.service_logs(name) for name in swarm.service_states(stack.project))
    assert len(logs) > 10_000
    secrets = {name: stack.env[name] for name in SECRETS
               if name not in ("ONEBOX_PREDICT_KEY", "ONEBOX_FEEDBACK_KEY")}
    assert not sorted(n for n, value in secrets.items() if value in specs), "in a spec"
    assert not sorted(n for n, value in secrets.items() if value in logs), "in a log"
    mounted = {s["SecretName"] for spec in json.loads(specs) if spec["Spec"]["Name"]
               == stack.service("predictor")
               for s in spec["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets", [])}
    assert {name.rsplit("_", 1)[0] for name in mounted} == {
        f"{stack.project}_{name}" for name in
        ("monitoring_db_password", "prediction_id_key", "predictor_api_keys")}


# --- what Swarm is for, under load through the front door -----------------------------------

def test_scaling_the_predictor_1_to_3_under_load_fails_nothing_and_spreads_the_requests(
    stack: SwarmStack,
) -> None:
    stack.scale("predictor", 1)
    with SteadyLoad.through_front_door(stack) as load:
        load.wait_for(100)
        took = stack.scale("predictor", 3)
        before = stack.replica_metric("onebox_http_requests_total", PREDICT)
        # The front door re-resolves the name every 3 s (its resolver's `valid`).
        time.sleep(20)
        after = stack.replica_metric("onebox_http_requests_total", PREDICT)
    assert not load.failures, load.failures[:5]
    assert len(after) == 3
    spread = {task[:12]: after[task] - before.get(task, 0) for task in after}
    print(f"\n[swarm] scaled 1 -> 3 in {took:.0f} s under load: {load.summary()}; /predict "
          f"answered per replica in the 20 s after: {spread}")
    # Each replica took a fair part: at least a quarter of an even share.
    total = sum(spread.values())
    assert all(count >= total / 3 / 4 for count in spread.values()), spread
    answered, logged = assert_logged_once(stack, load)
    assert logged == answered
    stack.scale("predictor", REPLICAS)


def test_rolling_the_predictor_to_a_new_image_under_load_fails_nothing(
    stack: SwarmStack,
) -> None:
    """A new build (its release label differs) rolled out start-first, one replica at a
    time: every request answered, and afterwards every replica serves the new one."""
    stack.scale("predictor", REPLICAS)
    release = f"rolled-{uuid.uuid4().hex[:6]}"
    image = "onebox-python:standin-rolled"
    subprocess.run(["docker", "build", "--quiet", "--build-arg",
                    "PYTHON_IMAGE=onebox-standin/python:3.11", "--build-arg",
                    f"ONEBOX_RELEASE={release}", "--tag", image, str(ROOT)],
                   check=True, capture_output=True, timeout=1200)
    old = served_releases(stack)
    assert release not in old
    with SteadyLoad.through_front_door(stack) as load:
        load.wait_for(60)
        took = stack.update("predictor", "--image", image)
        # The front door forgets the old replicas' addresses (its resolver's 3 s), still
        # under load.
        after = wait_for("every answer from the new release", lambda: (
            releases if (releases := served_releases(stack)) == {release} else None),
            timeout=60, interval=1)
    print(f"\n[swarm] rolled {REPLICAS} replicas {old} -> {release} in {took:.0f} s under "
          f"load: {load.summary()}")
    assert not load.failures, load.failures[:5]
    assert after == {release}
    answered, logged = assert_logged_once(stack, load)
    assert logged == answered


def test_a_killed_replica_is_replaced_and_its_failures_are_bounded(stack: SwarmStack) -> None:
    """SIGKILL to one replica's container: the others keep answering, so what fails is
    at most what was in flight on it (one request per client); Swarm starts a new task.
    Every answered prediction is logged once: what the killed replica had not written is
    in its journal on the node's spool volume, which the other replicas replay."""
    stack.scale("predictor", REPLICAS)
    victim = stack.tasks("predictor")[0]
    with SteadyLoad.through_front_door(stack) as load:
        load.wait_for(100)
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
        killed_at = time.monotonic()
        wait_for("a new replica in its place", lambda: True if (
            victim not in (tasks := stack.tasks("predictor")) and len(tasks) == REPLICAS)
            else None, timeout=180, interval=1)
        stack.converge("predictor")
        replaced = time.monotonic() - killed_at
        load.wait_for(100)  # and the traffic goes on after the replacement
    log_settled(stack)
    rows, logged = rows_for(stack, load.answered)
    print(f"\n[swarm] one of {REPLICAS} replicas killed: {load.summary()}; replaced in "
          f"{replaced:.0f} s; answered {len(load.answered)}, logged {logged} (rows {rows}); "
          f"failures: {[f[1][:80] for f in load.failures[:3]]}")
    assert len(load.failures) <= load.threads, load.failures
    assert rows == logged == len(load.answered)
