"""`make swarm-up` / `make swarm-down`: onebox on Docker Swarm (docker-stack.yml).

    python -m swarm.deploy up   [--env-file .env] [--stack onebox] [--offline]
    python -m swarm.deploy down [--stack onebox] [--volumes]

up, from nothing or again (each step finds what is already there):
  1. a swarm: this engine's, or a new single-node one (`docker swarm init`, advertised on
     SWARM_ADVERTISE_ADDR, default 127.0.0.1: set the address other nodes reach to add
     them later);
  2. the state node: the node labelled onebox.state=true, this one when none is;
  3. the images, built as compose builds them (every node needs them: docs/swarm-and-kubernetes.md);
  4. the secrets, from the env file (what each holds: docker-stack.yml's x-onebox-secrets),
     each under a name that changes with its value;
  5. `docker stack deploy`, then a wait until every service runs healthy and every one-shot
     job has completed (or a report of what did not).
--offline swaps in the stand-ins of tests/stack/compose.offline.yml (a machine that cannot
pull images) and leaves Grafana at 0 replicas (it has no stand-in).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from swarm.render import STACK_FILE, VARIABLE

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_COMPOSE = ROOT / "tests/stack/compose.offline.yml"
STANDINS = ROOT / "tests/stack/standins/build.sh"
STATE_LABEL = "onebox.state"
STACK_LABEL = "com.docker.stack.namespace"


class DeployError(RuntimeError):
    """What stopped the deployment, said for the person running it."""


def docker(*args: str, input_text: str | None = None, env: Mapping[str, str] | None = None,
           check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, input=input_text,
                          env=None if env is None else {**os.environ, **env}, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        raise DeployError(f"docker {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


# --- 1, 2: the swarm and its state node -----------------------------------------------------

def ensure_swarm(advertise_addr: str) -> None:
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    node_state, manager = state.split()
    if node_state == "inactive":
        print(f"== a new single-node swarm, advertised on {advertise_addr}")
        docker("swarm", "init", "--advertise-addr", advertise_addr)
    elif node_state != "active":
        raise DeployError(f"this engine's swarm is {node_state}: wait, or `docker swarm leave`")
    elif manager != "true":
        raise DeployError("this engine is a swarm worker: run make swarm-up on a manager")


def ensure_state_node() -> str:
    """The node holding PostgreSQL, MLflow's artifacts, Prometheus and the reports."""
    labelled = docker("node", "ls", "--quiet", "--filter",
                      f"node.label={STATE_LABEL}=true").split()
    if len(labelled) > 1:
        raise DeployError(f"{len(labelled)} nodes carry {STATE_LABEL}=true: the state lives on "
                          "one; remove the label from all but one (docker node update "
                          f"--label-rm {STATE_LABEL} NODE)")
    if labelled:
        return labelled[0]
    node = docker("info", "--format", "{{.Swarm.NodeID}}").strip()
    docker("node", "update", "--label-add", f"{STATE_LABEL}=true", node)
    print(f"== node {node[:12]} (this one) labelled {STATE_LABEL}=true: the state lives here")
    return node


# --- 3: images ------------------------------------------------------------------------------

def build_images(env_file: Path, offline: bool) -> None:
    files = ["-f", str(ROOT / "docker-compose.yml")]
    if offline:
        subprocess.run(["bash", str(STANDINS)], check=True)
        files += ["-f", str(OFFLINE_COMPOSE)]
    print("== images (docker compose build)")
    subprocess.run(["docker", "compose", "--project-directory", str(ROOT), "--env-file",
                    str(env_file), *files, "build", "--quiet"], check=True, cwd=ROOT)


# --- 4: secrets -----------------------------------------------------------------------------

def secret_values(templates: Mapping[str, str], values: Mapping[str, str | None],
                  ) -> dict[str, str]:
    """What each secret holds, from the env file's values; an empty one is refused."""
    filled = {}
    for name, template in templates.items():
        missing = [v for v in VARIABLE.findall(template) if not values.get(v)]
        if missing:
            raise DeployError(f"secret {name}: {', '.join(missing)} is empty in the env file "
                              "(make env-file generates one)")
        filled[name] = VARIABLE.sub(lambda m: str(values[m.group(1)]), template)
    return filled


def versioned_name(stack: str, name: str, value: str, key: str) -> str:
    """A Swarm secret cannot change: a new value is a new secret (the services using it
    roll onto it).  12 hex digits of an HMAC of the value, keyed by the swarm's own id,
    tell the versions apart; a plain hash in a name every spec shows would let anyone
    test guesses of a weak password offline."""
    digest = hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:12]
    return f"{stack}_{name}_{digest}"


def ensure_secrets(stack: str, filled: Mapping[str, str]) -> dict[str, str]:
    """Create the secrets that are not there yet; the variables naming them for the stack
    file (ONEBOX_SECRET_<NAME>)."""
    existing = set(docker("secret", "ls", "--format", "{{.Name}}").split())
    key = docker("info", "--format", "{{.Swarm.Cluster.ID}}").strip()
    names = {}
    for name, value in filled.items():
        versioned = versioned_name(stack, name, value, key)
        if versioned not in existing:
            docker("secret", "create", "--label", f"{STACK_LABEL}={stack}", versioned, "-",
                   input_text=value)
        names["ONEBOX_SECRET_" + name.upper()] = versioned
    return names


# --- 5: deploy and wait ---------------------------------------------------------------------

def offline_override(stack_file: dict[str, Any]) -> dict[str, Any]:
    """The stand-in images for the stack's services, and no Grafana (no stand-in)."""
    offline = yaml.safe_load(OFFLINE_COMPOSE.read_text())["services"]
    services: dict[str, Any] = {}
    for name in stack_file["services"]:
        override = offline.get(name, {})
        if "image" in override:
            services[name] = {"image": override["image"]}
        if "grafana" in override.get("profiles", []):
            services[name] = {"deploy": {"replicas": 0}}
    return {"services": services}


def service_states(stack: str) -> dict[str, str]:
    """Service (without the stack's prefix) -> its replicas column, e.g. "2/2" or, for a
    job, "0/1 (1/1 completed)"."""
    text = docker("service", "ls", "--filter", f"label={STACK_LABEL}={stack}", "--format",
                  "{{json .}}")
    states = {}
    for line in text.splitlines():
        row = json.loads(line)
        states[row["Name"].removeprefix(f"{stack}_")] = row["Replicas"]
    return states


def update_states(stack: str, services: Sequence[str]) -> dict[str, str]:
    """Service -> the state of its last rolling update ("" when it never had one)."""
    text = docker("service", "inspect", "--format",
                  "{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                  *(f"{stack}_{name}" for name in services))
    states = {}
    for line in text.splitlines():
        name, _, state = line.partition(" ")
        states[name.removeprefix(f"{stack}_")] = state.strip()
    return states


# A rolling update that did not go through (failure_action: rollback, or paused).
FAILED_UPDATE = ("paused", "rollback_started", "rollback_paused", "rollback_completed")


def converged(replicas: str) -> bool:
    job = re.search(r"\((\d+)/(\d+) completed\)", replicas)
    if job:
        return job.group(1) == job.group(2)
    running, _, desired = replicas.partition("/")
    return running == desired


def wait_converged(stack: str, services: Sequence[str], timeout: float) -> float:
    """Wait until every service runs its replicas (healthy: Swarm counts a task running
    once its health check passes) with no rolling update under way, and every job has
    completed -- seen twice in a row, since a redeploy's update starts a moment after
    `stack deploy` returns, while the old tasks still count."""
    started = time.monotonic()
    deadline = started + timeout
    settled = 0
    while True:
        states = service_states(stack)
        waiting = {name: states.get(name, "absent") for name in services
                   if not converged(states.get(name, "0/1"))}
        present = [name for name in services if name in states]
        for name, state in update_states(stack, present).items() if present else ():
            if state in FAILED_UPDATE:
                raise DeployError(f"{name}: its rolling update did not go through ({state}); "
                                  f"docker service ps {stack}_{name}")
            if state == "updating":
                waiting[name] = "updating"
        settled = 0 if waiting else settled + 1
        if settled >= 2:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            detail = "\n".join(
                docker("service", "ps", "--no-trunc", "--format",
                       "{{.Name}} {{.CurrentState}} {{.Error}}", f"{stack}_{name}",
                       check=False).strip() for name in waiting)
            raise DeployError(f"not converged within {timeout:.0f} s: {waiting}\n{detail}")
        time.sleep(3)


def deploy(stack: str, env_file: Path, *, offline: bool, timeout: float,
           advertise_addr: str, build: bool = True) -> float:
    values = dotenv_values(env_file)
    stack_file = yaml.safe_load(STACK_FILE.read_text())
    ensure_swarm(advertise_addr)
    ensure_state_node()
    if build:
        build_images(env_file, offline)
    secret_names = ensure_secrets(stack, secret_values(stack_file["x-onebox-secrets"], values))
    files = ["-c", str(STACK_FILE)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="onebox-offline-") as override:
        if offline:
            yaml.safe_dump(offline_override(stack_file), override)
            override.flush()
            files += ["-c", override.name]
        print(f"== docker stack deploy {stack}")
        env = {k: v for k, v in values.items() if v is not None}
        docker("stack", "deploy", "--resolve-image", "never", "--prune",
               *files, stack, env={**env, **secret_names})
    services = [name for name in stack_file["services"] if not (offline and name == "grafana")]
    took = wait_converged(stack, services, timeout)
    print(f"== {stack}: every service up, every job done ({took:.0f} s); the front door: "
          f"{values.get('PUBLIC_URL')}/")
    return took


def remove(stack: str, *, volumes: bool, timeout: float = 180) -> None:
    docker("stack", "rm", stack, check=False)
    deadline = time.monotonic() + timeout
    # Its containers and network go after `stack rm` returns.
    while time.monotonic() < deadline:
        running = docker("ps", "--quiet", "--filter", f"label={STACK_LABEL}={stack}")
        networks = docker("network", "ls", "--quiet", "--filter",
                          f"label={STACK_LABEL}={stack}")
        if not running.strip() and not networks.strip():
            break
        time.sleep(2)
    else:
        raise DeployError(f"{stack}'s containers still there after {timeout:.0f} s")
    # Except the exited containers of the jobs' tasks (engine 20.10 keeps them), which
    # would hold their volumes.  Swarm may be removing some of them itself meanwhile ("removal
    # already in progress"): each is asked to go, and the stack is gone when none is left.
    while exited := docker("ps", "--all", "--quiet", "--filter",
                           f"label={STACK_LABEL}={stack}").split():
        if time.monotonic() > deadline:
            raise DeployError(f"{stack}'s exited containers still there after {timeout:.0f} s: "
                              f"{exited}")
        for container in exited:
            docker("rm", "--force", container, check=False)
        time.sleep(1)
    if volumes:
        for kind in ("volume", "secret"):
            ids = docker(kind, "ls", "--quiet", "--filter",
                         f"label={STACK_LABEL}={stack}").split()
            if ids:
                docker(kind, "rm", *ids)
    # (`stack rm` removes the stack's secrets too: up creates them again from the env file.)
    print(f"== {stack} removed" + (" with its volumes" if volumes else " (volumes kept)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--stack", default="onebox")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--offline", action="store_true",
                        help="stand-ins for the upstream images (tests/stack/)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--volumes", action="store_true",
                        help="down: also remove the stack's volumes and secrets")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            deploy(args.stack, args.env_file, offline=args.offline, timeout=args.timeout,
                   advertise_addr=os.environ.get("SWARM_ADVERTISE_ADDR", "127.0.0.1"))
        else:
            remove(args.stack, volumes=args.volumes)
    except DeployError as exc:
        print(f"swarm {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
