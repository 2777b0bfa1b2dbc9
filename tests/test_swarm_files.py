"""docker-stack.yml against docker-compose.yml, without an engine: the stack file is what
the compose file renders to, keeps every service's definition, and makes the changes Swarm
needs (secrets as files, one-shot steps as jobs, replicas and rolling updates, DNS round
robin, host-mode publishing, the state on one node).  The image's entrypoint turns
secret files back into variables.  The deployment itself: tests/test_swarm.py."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from swarm import deploy, render

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
STACK = yaml.safe_load((ROOT / "docker-stack.yml").read_text())
SERVICES = {name: spec for name, spec in COMPOSE["services"].items() if not spec.get("profiles")}
ENTRYPOINT = ROOT / "docker-entrypoint.sh"


def test_the_stack_file_is_what_the_compose_file_renders() -> None:
    assert render.main(["--check"]) == 0, "docker-compose.yml changed: make swarm-render"


def test_every_service_is_there_with_its_image_command_volumes_and_health_check() -> None:
    assert set(STACK["services"]) == set(SERVICES)
    for name, compose in SERVICES.items():
        stack = STACK["services"][name]
        for key in ("image", "command", "entrypoint", "volumes", "healthcheck", "logging",
                    "stop_signal"):
            assert stack.get(key) == compose.get(key), (name, key)
        assert stack["deploy"]["resources"] == compose["deploy"]["resources"], name


def test_no_secret_is_in_a_spec_and_each_reaches_its_service_as_a_file() -> None:
    for name, compose in SERVICES.items():
        stack = STACK["services"][name]
        environment = stack.get("environment", {})
        referenced = {v for value in map(str, environment.values())
                      for v in render.VARIABLE.findall(value)}
        assert not referenced & render.SECRET_VARIABLES, (name, referenced)
        for key, value in compose.get("environment", {}).items():
            if not render.SECRET_VARIABLES & set(render.VARIABLE.findall(str(value))):
                assert environment[key] == value, (name, key)
                continue
            suffix = "__FILE" if name == "grafana" else "_FILE"
            secret = environment[key + suffix].removeprefix("/run/secrets/")
            assert secret in stack["secrets"], (name, key)
            assert STACK["secrets"][secret]["external"] is True
            # What the secret holds is the value compose would have given the variable.
            held = STACK["x-onebox-secrets"][secret]
            assert render.VARIABLE.findall(held) == render.VARIABLE.findall(str(value))


def test_one_shot_steps_are_jobs_retried_on_failure_and_the_rest_restart_always() -> None:
    for name, compose in SERVICES.items():
        deploy_ = STACK["services"][name]["deploy"]
        assert deploy_["endpoint_mode"] == "dnsrr", name  # no virtual IP (no IPVS here)
        if compose.get("restart") == "no":
            assert deploy_["mode"] == "replicated-job", name
            assert deploy_["restart_policy"]["condition"] == "on-failure", name
        else:
            assert deploy_["mode"] == "replicated", name
            assert deploy_["restart_policy"]["condition"] == "any", name


def test_the_predictor_has_replicas_and_a_start_first_rolling_update_that_rolls_back() -> None:
    predictor = STACK["services"]["predictor"]["deploy"]
    assert predictor["replicas"] == "${PREDICTOR_REPLICAS:-2}"
    assert predictor["update_config"]["order"] == "start-first"
    assert predictor["update_config"]["parallelism"] == 1
    assert predictor["update_config"]["failure_action"] == "rollback"
    assert predictor["rollback_config"]["order"] == "start-first"
    # start-first waits for the new task's health check: the predictor has one.
    assert "healthcheck" in STACK["services"]["predictor"]
    # A stopping replica serves on while the front door forgets it (its resolver's valid
    # time), then stops gracefully (gunicorn's graceful_timeout): Swarm waits for both.
    spec = STACK["services"]["predictor"]
    drain = int(re.search(r":-(\d+)\}", spec["environment"]["PREDICTOR_DRAIN_SECONDS"])[1])
    valid = int(re.search(r"resolver 127\.0\.0\.11 valid=(\d+)s",
                          (ROOT / "gateway/nginx.conf").read_text())[1])
    graceful = int(re.search(r"^graceful_timeout = (\d+)$",
                             (ROOT / "server/gunicorn.conf.py").read_text(), re.M)[1])
    assert drain > valid
    assert int(spec["stop_grace_period"].removesuffix("s")) >= drain + graceful


def test_only_the_front_door_is_published_in_host_mode() -> None:
    published = {name: spec["ports"] for name, spec in STACK["services"].items()
                 if "ports" in spec}
    assert published == {"gateway": [{"target": 8443, "published": "${GATEWAY_PORT:-8443}",
                                       "protocol": "tcp", "mode": "host"}]}


def test_what_holds_state_runs_on_the_state_node_and_the_predictor_anywhere() -> None:
    pinned = {name for name, spec in STACK["services"].items()
              if render.STATE_NODE_CONSTRAINT in
              spec["deploy"].get("placement", {}).get("constraints", [])}
    for volume_owner in ("postgres", "mlflow", "prometheus", "gateway", "prefect-worker",
                         "bootstrap", "alertmanager", "grafana"):
        assert volume_owner in pinned
    assert "predictor" not in pinned and "drift-exporter" not in pinned
    # What they share with the state node is only node-local by design.
    for name in ("predictor", "drift-exporter"):
        sources = {volume.split(":", 1)[0] for volume in STACK["services"][name]["volumes"]}
        assert sources <= render.NODE_LOCAL_VOLUMES, (name, sources)


def test_docker_accepts_the_stack_file(tmp_path: Path) -> None:
    """`docker stack config` (the CLI's own loader and schema, no engine needed) reads it
    with every variable set as make swarm-up sets them."""
    env = {**os.environ, "POSTGRES_PASSWORD": "unused", "PUBLIC_URL": "https://x:1",
           "ADMIN_USER": "admin",
           **{"ONEBOX_SECRET_" + name.upper(): f"onebox_{name}_0"
              for name in STACK["x-onebox-secrets"]}}
    done = subprocess.run(["docker", "stack", "config", "-c", str(ROOT / "docker-stack.yml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["services"]["predictor"]["deploy"]["replicas"] == 2
    assert config["services"]["setup"]["deploy"]["mode"] == "replicated-job"
    # No secret's value reached a service (the CLI fills the x- extension too, but sends
    # only services, networks, volumes, secrets and configs to the engine).
    assert "unused" not in yaml.safe_dump(config["services"])


# --- make swarm-up's secrets ------------------------------------------------------------------

def test_secrets_are_filled_from_the_env_file_and_an_empty_one_is_refused() -> None:
    templates = {"admin_user_admin_password": "${ADMIN_USER}:${ADMIN_PASSWORD}"}
    filled = deploy.secret_values(templates, {"ADMIN_USER": "ann", "ADMIN_PASSWORD": "s3:x"})
    assert filled == {"admin_user_admin_password": "ann:s3:x"}
    with pytest.raises(deploy.DeployError, match="ADMIN_PASSWORD is empty"):
        deploy.secret_values(templates, {"ADMIN_USER": "ann", "ADMIN_PASSWORD": ""})


def test_a_new_secret_value_gets_a_new_secret_name() -> None:
    first = deploy.versioned_name("onebox", "postgres_password", "one", "swarm-a")
    assert first == deploy.versioned_name("onebox", "postgres_password", "one", "swarm-a")
    assert first != deploy.versioned_name("onebox", "postgres_password", "two", "swarm-a")
    assert re.fullmatch(r"onebox_postgres_password_[0-9a-f]{12}", first)
    # Keyed by the swarm: the same password hashes differently on another one.
    assert first != deploy.versioned_name("onebox", "postgres_password", "one", "swarm-b")


# --- the image's entrypoint -------------------------------------------------------------------

def run_entrypoint(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ENTRYPOINT), "bash", "-c",
                           'echo "pw=${DB_PASSWORD-unset} file=${DB_PASSWORD_FILE-unset} '
                           'cert=${SSL_CERT_FILE-unset}"'],
                          env={"PATH": os.environ["PATH"], "ONEBOX_SECRETS_DIR": str(tmp_path),
                               **env}, capture_output=True, text=True, check=False)


def test_the_entrypoint_turns_a_secret_file_into_its_variable(tmp_path: Path) -> None:
    (tmp_path / "db_password").write_text("p@ss word:1")
    done = run_entrypoint(tmp_path, {"DB_PASSWORD_FILE": str(tmp_path / "db_password"),
                                     "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem"})
    assert done.returncode == 0, done.stderr
    # The value as it is; the _FILE variable gone; a *_FILE outside the secrets left alone.
    assert done.stdout.strip() == "pw=p@ss word:1 file=unset cert=/etc/ssl/certs/ca.pem"


def test_the_entrypoint_refuses_a_missing_secret_and_a_variable_set_twice(
    tmp_path: Path,
) -> None:
    missing = run_entrypoint(tmp_path, {"DB_PASSWORD_FILE": str(tmp_path / "absent")})
    assert missing.returncode == 64 and "DB_PASSWORD_FILE" in missing.stderr
    (tmp_path / "db_password").write_text("x")
    twice = run_entrypoint(tmp_path, {"DB_PASSWORD_FILE": str(tmp_path / "db_password"),
                                      "DB_PASSWORD": "y"})
    assert twice.returncode == 64 and "both DB_PASSWORD and DB_PASSWORD_FILE" in twice.stderr
