"""The stack as the tests and the benchmarks run it.

`ComposeStack`: the project's docker-compose.yml with the offline override (stand-ins for
the images this machine cannot pull), under a project name of its own, its one published
port (the front door) a free one on 127.0.0.1, and an env file generated from .env.local
as `make up` generates it (random secrets).  `SwarmStack`: the same env file, and
docker-stack.yml deployed by the code of `make swarm-up` (swarm/deploy.py) on this
engine's swarm; it answers the ComposeStack methods the users'-path tests call (`compose
exec SERVICE ...` becomes `docker exec` into one of the service's running tasks), so those
tests run unchanged against it.

Nothing here is a mock: the real services are built and started; the tests talk to them
only through the front door, over TLS checked against the certificate the stack made
(and read PostgreSQL through `exec`), as a user on another machine would.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import requests

from operations.processes import free_port
from swarm import deploy as swarm

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = ("docker-compose.yml", "tests/stack/compose.offline.yml")
STANDINS = ROOT / "tests/stack/standins/build.sh"
# What the front door routes where (gateway/nginx.conf).
PREFIX = {"predictor": "", "mlflow": "/mlflow", "prefect-server": "/prefect",
          "prometheus": "/prometheus", "reports": "/reports"}
T = TypeVar("T")
S = TypeVar("S", bound="ComposeStack")


class EngineMissing(RuntimeError):
    """No Docker engine or no compose v2 plugin: the stack cannot run here."""


def require_engine() -> None:
    """Fail with what to do when the engine or compose v2 is missing (never a skip)."""
    if shutil.which("docker") is None:
        raise EngineMissing("no docker CLI: run `make test-prereqs` (root, Debian 12)")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, check=False)
    if info.returncode != 0:
        raise EngineMissing("the Docker engine does not answer (`docker info` failed: "
                            f"{info.stderr.strip()[-300:]}); `make test-prereqs` starts it")
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                             check=False)
    if compose.returncode != 0:
        raise EngineMissing("no compose v2 plugin (`docker compose version` failed); "
                            "`make test-prereqs` installs it")


def read_env_file(path: Path) -> dict[str, str]:
    """The env file's values as compose reads them (python-dotenv: quotes taken off)."""
    from dotenv import dotenv_values

    return {key: value or "" for key, value in dotenv_values(path).items()}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 1.0) -> T:
    """Call `probe` until it returns something other than None (or raises nothing)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (requests.RequestException, ValueError, KeyError) as exc:
            last, result = exc, None
        if result is not None:
            return result
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


# The tests start every flow run themselves (quick runs).  The deployments keep a schedule
# each (the scheduler is tested), but one that never fires during a test run: with
# .env.local's, the report at 0 */3 and the drift-check at every hour's 0 landed in the
# middle of tests that compare the stack before and after (a CI run's backup test found a
# report written at 09:00, after its restore).
QUIET_SCHEDULES = {name: "0 0 1 1 *" for name in ("TRAIN_CRON", "REPORT_CRON", "DRIFT_CHECK_CRON")}


@dataclass
class ComposeStack:
    project: str
    env_file: Path
    env: dict[str, str]
    port: int  # the front door's, on 127.0.0.1
    ca_file: Path  # the front door's certificate, once the stack made it
    extra_files: tuple[str, ...] = ()

    # What differs by engine, and nothing else: the project names' prefix, and whether the
    # front door's port is published on a given address (compose) or in Swarm's host mode.
    PROJECT_PREFIX = "onebox-test"
    PUBLISH_ADDRESS: ClassVar[str | None] = "127.0.0.1"

    @classmethod
    def create(cls: type[S], workdir: Path, *, extra_files: tuple[str, ...] = (),
               **overrides: str) -> S:
        """A stack with its own project name, a free port for its front door and an env file
        generated from .env.local as `make up` generates it (random secrets; `overrides`
        win), with schedules that never fire during a test run."""
        from operations.generate_env import fill

        port = free_port()
        values = {"GATEWAY_PORT": str(port), "PUBLIC_URL": f"https://localhost:{port}",
                  **({"PUBLISH_ADDRESS": cls.PUBLISH_ADDRESS} if cls.PUBLISH_ADDRESS else {}),
                  **QUIET_SCHEDULES, **overrides}
        env_file = workdir / "stack.env"
        env_file.write_text(fill((ROOT / ".env.local").read_text(), values))
        return cls(f"{cls.PROJECT_PREFIX}-{uuid.uuid4().hex[:8]}", env_file,
                   read_env_file(env_file), port, workdir / "gateway-ca.pem", extra_files)

    # --- compose ---------------------------------------------------------------------

    def compose_argv(self, *args: str) -> list[str]:
        files = [arg for name in (*COMPOSE_FILES, *self.extra_files)
                 for arg in ("-f", str(ROOT / name))]
        return ["docker", "compose", "--project-name", self.project, "--project-directory",
                str(ROOT), "--env-file", str(self.env_file), *files, *args]

    def compose(self, *args: str, timeout: float = 600, check: bool = True,
                ) -> subprocess.CompletedProcess:
        done = subprocess.run(self.compose_argv(*args), capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=ROOT)
        if check and done.returncode != 0:
            # A one-off that exited non-zero says why only in its own log.
            failed = sorted(set(re.findall(r'service "([\w-]+)" didn\'t complete',
                                           done.stdout + done.stderr)))
            raise AssertionError(f"docker compose {' '.join(args)} failed "
                                 f"({done.returncode}):\n{done.stdout[-3000:]}\n"
                                 f"{done.stderr[-3000:]}"
                                 + (f"\n--- logs of {', '.join(failed)} ---\n"
                                    f"{self.logs(*failed)}" if failed else ""))
        return done

    def up(self, timeout: float = 1200) -> float:
        """`up -d --wait` (building what changed); returns the seconds it took.  Then the
        front door's certificate is fetched, to check its TLS against."""
        started = time.monotonic()
        done = self.compose("up", "-d", "--build", "--wait", "--wait-timeout", str(int(timeout)),
                            timeout=timeout + 60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"`up --wait` failed ({done.returncode}):\n"
                                 f"{done.stderr[-3000:]}\n--- logs ---\n{self.logs()}")
        self.fetch_ca()
        return time.monotonic() - started

    def fetch_ca(self) -> Path:
        """The front door's certificate (self-signed: the one to trust), to `ca_file`."""
        cert = self.compose("exec", "-T", "gateway", "cat", "/etc/onebox/gateway/tls/cert.pem")
        self.ca_file.write_text(cert.stdout)
        return self.ca_file

    def down(self, *, volumes: bool = False) -> None:
        argv = ("down", "--remove-orphans", *(["--volumes"] if volumes else []))
        for _ in range(3):
            done = self.compose(*argv, timeout=300, check=False)
            # Docker 20.10 sometimes frees a just-removed container's endpoint after it
            # tried to remove the network ("has active endpoints"): a second `down` finds
            # the endpoint gone and finishes the job.
            if done.returncode == 0 or "has active endpoints" not in done.stderr:
                break
            time.sleep(2)
        if done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(argv)} failed "
                                 f"({done.returncode}):\n{done.stderr[-3000:]}")

    def logs(self, *services: str, tail: int = 60) -> str:
        done = self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False,
                            timeout=120)
        return done.stdout[-12000:]

    def containers(self, *, all_states: bool = True) -> list[dict[str, Any]]:
        done = self.compose("ps", "--format", "json", *(["--all"] if all_states else []))
        text = done.stdout.strip()
        if not text:
            return []
        # compose 2.2x prints one JSON object per line; older ones a JSON list.
        if text.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def labelled(self, kind: str) -> list[str]:
        """Ids of the containers or volumes Docker still has under this project's label."""
        argv = ["docker", kind, "ls", "--quiet", "--filter",
                f"label=com.docker.compose.project={self.project}"]
        if kind == "container":
            argv.insert(3, "--all")
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        return done.stdout.split()

    def predictor_metric(self, name: str) -> float:
        """A metric straight from the predictor (inside the network: /metrics is the
        scraper's, not routed by the front door), summed over its labels."""
        probe = ("import urllib.request; print(urllib.request.urlopen("
                 "'http://localhost:9696/metrics', timeout=10).read().decode())")
        text = self.compose("exec", "-T", "predictor", "python", "-c", probe).stdout
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def psql(self, database: str, sql: str) -> str:
        """Run `sql` in the stack's PostgreSQL (over its local socket) and return the rows."""
        done = self.compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", database,
                            "-v", "ON_ERROR_STOP=1", "-tAc", sql, timeout=60)
        return done.stdout.strip()

    # --- the front door ---------------------------------------------------------------

    def url(self, service: str, path: str = "") -> str:
        return f"https://localhost:{self.port}{PREFIX[service]}{path}"

    @property
    def admin(self) -> tuple[str, str]:
        """The people's login (basic auth)."""
        return self.env["ADMIN_USER"], self.env["ADMIN_PASSWORD"]

    def key(self, scope: str) -> dict[str, str]:
        """The Authorization header of the generated client key for `scope`."""
        token = self.env["ONEBOX_PREDICT_KEY" if scope == "predict" else "ONEBOX_FEEDBACK_KEY"]
        return {"Authorization": f"Bearer {token}"}

    def _request(self, method: str, service: str, path: str, **kwargs: Any) -> requests.Response:
        # People's pages get the login, the predictor its keys (the caller's headers win).
        if service != "predictor" and "auth" not in kwargs:
            kwargs["auth"] = self.admin
        if service == "predictor" and "headers" not in kwargs and path in (
                "/predict", "/model", "/openapi.json"):
            kwargs["headers"] = self.key("predict")
        if service == "predictor" and "headers" not in kwargs and path == "/feedback":
            kwargs["headers"] = self.key("feedback")
        kwargs.setdefault("timeout", 30)
        return requests.request(method, self.url(service, path), verify=str(self.ca_file),
                                **kwargs)

    def get(self, service: str, path: str, **kwargs: Any) -> requests.Response:
        return self._request("GET", service, path, **kwargs)

    def post(self, service: str, path: str, **kwargs: Any) -> requests.Response:
        return self._request("POST", service, path, **kwargs)

    def delete(self, service: str, path: str, **kwargs: Any) -> requests.Response:
        return self._request("DELETE", service, path, **kwargs)

    def setting(self, name: str) -> str:
        return self.env[name]

    def set_env(self, **values: str) -> None:
        """Change the env file as a user edits .env (a line replaced, or added); the next
        `up` recreates the services whose settings changed."""
        lines = self.env_file.read_text().splitlines()
        for name, value in values.items():
            at = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
            if at:
                lines[at[0]] = f"{name}={value}"
            else:
                lines.append(f"{name}={value}")
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env = read_env_file(self.env_file)

    # --- MLflow and Prefect, through their APIs -----------------------------------------

    def model_versions(self, model: str) -> dict[str, dict[str, str]]:
        """version -> its tags, from MLflow's REST API."""
        answer = self.get("mlflow", "/api/2.0/mlflow/model-versions/search",
                          params={"filter": f"name='{model}'", "max_results": 1000})
        answer.raise_for_status()
        return {v["version"]: {t["key"]: t["value"] for t in v.get("tags", [])}
                for v in answer.json().get("model_versions", [])}

    def alias(self, model: str, alias: str) -> str | None:
        answer = self.get("mlflow", "/api/2.0/mlflow/registered-models/alias",
                          params={"name": model, "alias": alias})
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return str(answer.json()["model_version"]["version"])

    def deployment(self, name: str) -> dict[str, Any]:
        answer = self.get("prefect-server", f"/api/deployments/name/{name}")
        answer.raise_for_status()
        return answer.json()

    def quick_run(self, deployment: str, parameters: Mapping[str, Any] | None = None,
                  ) -> str:
        """Start a run of `deployment` the way the UI's Quick run (or, with parameters,
        Custom run) button does; returns the flow run's id."""
        deployment_id = self.deployment(deployment)["id"]
        body: dict[str, Any] = {"state": {"type": "SCHEDULED",
                                          "message": "Run from the Prefect UI with defaults"}}
        if parameters:
            body["parameters"] = dict(parameters)
        answer = self.post("prefect-server", f"/api/deployments/{deployment_id}/create_flow_run",
                           json=body)
        answer.raise_for_status()
        return str(answer.json()["id"])

    def wait_for_flow_run(self, flow_run_id: str, timeout: float = 600) -> dict[str, Any]:
        """The flow run once it reached a final state."""
        final = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

        def finished() -> dict[str, Any] | None:
            run = self.get("prefect-server", f"/api/flow_runs/{flow_run_id}").json()
            return run if run["state"]["type"] in final else None

        run = wait_for(f"flow run {flow_run_id}", finished, timeout, interval=2)
        if run["state"]["type"] != "COMPLETED":
            raise AssertionError(f"flow run {run['name']} ended {run['state']['type']}: "
                                 f"{run['state'].get('message')}\n{self.logs('prefect-worker')}")
        return run


# Machine-wide, beside any run's own folders: suites in other processes (pytest-xdist
# workers, a benchmark) share the engine and its images.
IMAGES_LOCK = Path(tempfile.gettempdir()) / "onebox-test-images.lock"
ENGINE_LOCK = Path(tempfile.gettempdir()) / "onebox-test-engine.lock"
def build_standins() -> None:
    """The stand-in images (kept when already built: seconds)."""
    subprocess.run(["bash", str(STANDINS)], check=True, timeout=1800)


def build_images() -> None:
    """The stand-in images and the onebox image on them (`make test-images`, the one
    recipe), built once: suites starting side by side wait for one build instead of each
    making its own (~5 minutes from nothing), then find everything built (seconds)."""
    from filelock import FileLock

    with FileLock(str(IMAGES_LOCK)):
        subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "test-images"],
                       check=True, timeout=1800)


class EngineLease:
    """A suite's claim on the one Docker engine, while its stack is up, shared with the
    other suites' (a lock on ENGINE_LOCK).  Two things the engine does disturb every
    other stack on it, and each waits until it is the only suite up: stopping and starting
    the engine (every container stops with it), and a node leaving a swarm (measured here:
    a compose stack's front door answered 0 of 20 requests after `docker swarm leave`,
    20 of 20 before).  Those run in `exclusive()`."""

    def __init__(self) -> None:
        self._fd = os.open(ENGINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # flock converts this process's shared lock (not atomically: it holds none while it
        # waits, so two suites asking at once cannot block each other for ever).
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        os.close(self._fd)  # the lock goes with it


def start_stack(workdir: Path, **overrides: str) -> ComposeStack:
    """A new stack's settings (nothing started yet): the engine checked (a failure, never a
    skip), the images built."""
    try:
        require_engine()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    build_images()
    return ComposeStack.create(workdir, **overrides)


def send_traffic(stack: ComposeStack, rows: int, seed: int, *, feedback: bool,
                 schema_path: Path | None = None) -> list[str]:
    """`rows` generated rows of the business (the churn demo, or the schema at
    `schema_path`) as 100-record batches; their outcomes as feedback."""
    from core.schema import Schema
    from core.task import task_of
    from simulation.demo_tables import demo_table
    from simulation.traffic import records_from_frame

    schema = Schema.load(schema_path) if schema_path else Schema.load()
    frame = demo_table(schema, rows, seed)
    records = records_from_frame(frame, schema)
    ids = []
    for start in range(0, rows, 100):
        answer = stack.post("predictor", "/predict", json=records[start:start + 100])
        assert answer.status_code == 200, answer.text
        ids += [p["prediction_id"] for p in answer.json()["predictions"]]
    if feedback:
        outcomes = task_of(schema).canonical(frame[schema.target]).tolist()
        for prediction_id, outcome in zip(ids, outcomes, strict=True):
            answer = stack.post("predictor", "/feedback",
                                json={"prediction_id": prediction_id, schema.target: outcome})
            assert answer.status_code == 200, answer.text
    return ids


# --- the same stack on Docker Swarm ------------------------------------------------------

TASK_SERVICE_LABEL = "com.docker.swarm.service.name"


def swarm_state() -> str:
    return subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class SwarmStack(ComposeStack):

    PROJECT_PREFIX = "onebox-swarm"
    PUBLISH_ADDRESS = None  # host mode: every node's port

    def deploy(self, timeout: float = 1200) -> float:
        took = swarm.deploy(self.project, self.env_file, offline=True, timeout=timeout,
                            advertise_addr="127.0.0.1")
        self.fetch_ca()
        return took

    def remove(self) -> None:
        swarm.remove(self.project, volumes=True, timeout=300)

    def service(self, name: str) -> str:
        return f"{self.project}_{name}"

    def tasks(self, service: str) -> list[str]:
        """Ids of the service's running containers (its replicas, on this node)."""
        done = subprocess.run(["docker", "ps", "--quiet", "--filter",
                               f"label={TASK_SERVICE_LABEL}={self.service(service)}"],
                              capture_output=True, text=True, check=True)
        return done.stdout.split()

    def scale(self, service: str, replicas: int, timeout: float = 300) -> float:
        swarm.docker("service", "scale", "--detach", f"{self.service(service)}={replicas}")
        return swarm.wait_converged(self.project, [service], timeout)

    def converge(self, service: str, timeout: float = 300) -> float:
        return swarm.wait_converged(self.project, [service], timeout)

    def update(self, service: str, *args: str, timeout: float = 600) -> float:
        """`docker service update ARGS` and wait until the rolling update completed (its
        tasks replaced one by one); the seconds it took."""
        started = time.monotonic()
        called_at = datetime.now(UTC) - timedelta(seconds=1)
        swarm.docker("service", "update", "--detach", *args, self.service(service))
        wait_for(f"the update of {service}", lambda: self.update_done(service, called_at),
                 timeout, interval=2)
        self.converge(service)
        return time.monotonic() - started

    def update_done(self, service: str, since: datetime) -> bool | None:
        """True once an update begun after `since` has completed."""
        status = json.loads(swarm.docker("service", "inspect", "--format",
                                         "{{json .UpdateStatus}}", self.service(service)))
        state = (status or {}).get("State", "")
        if state in swarm.FAILED_UPDATE:
            raise AssertionError(f"the update of {service} did not go through: {state}")
        if state != "completed":
            return None
        # RFC 3339 with nanoseconds; Python reads up to microseconds.
        begun_at = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", status["StartedAt"]))
        return True if begun_at >= since else None

    # --- what ComposeStack does through compose ------------------------------------------

    def compose_argv(self, *args: str) -> list[str]:
        if args[:2] != ("exec", "-T"):
            raise AssertionError(f"not under Swarm: docker compose {' '.join(args)}")
        service, *argv = args[2:]
        return ["docker", "exec", "-i", self.tasks(service)[0], *argv]

    def fetch_ca(self) -> Path:
        cert = self.compose("exec", "-T", "gateway", "cat", "/etc/onebox/gateway/tls/cert.pem")
        self.ca_file.write_text(cert.stdout)
        return self.ca_file

    def logs(self, *services: str, tail: int = 60) -> str:
        names = services or tuple(swarm.service_states(self.project))
        return "\n".join(self.service_logs(name, tail) for name in names)[-12000:]

    def service_logs(self, service: str, tail: int | None = None) -> str:
        """The output (stdout and stderr) of every container the service's tasks ran, the
        ones that exited included (a job's, a replaced replica's), from `docker logs`:
        `docker service logs` hung for minutes here on a service with dead tasks."""
        containers = subprocess.run(
            ["docker", "ps", "--all", "--quiet", "--filter",
             f"label={TASK_SERVICE_LABEL}={self.service(service)}"],
            capture_output=True, text=True, check=True).stdout.split()
        return "".join(subprocess.run(["docker", "logs", *(["--tail", str(tail)] if tail else []),
                                       container], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=60,
                                      check=False).stdout for container in containers)

    def replica_metric(self, name: str, having: str = "", service: str = "predictor",
                       ) -> dict[str, float]:
        """A metric from each running replica's /metrics, summed over its series whose line
        holds `having` (e.g. 'endpoint="/predict"'): container id -> value."""
        probe = ("import urllib.request; print(urllib.request.urlopen("
                 "'http://localhost:9696/metrics', timeout=10).read().decode())")
        values = {}
        for task in self.tasks(service):
            text = subprocess.run(["docker", "exec", task, "python", "-c", probe],
                                  capture_output=True, text=True, check=True, timeout=60).stdout
            values[task] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                               if line.startswith(name) and having in line)
        return values

    def predictor_metric(self, name: str) -> float:
        return sum(self.replica_metric(name).values())
