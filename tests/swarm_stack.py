"""The stack on Docker Swarm as the tests run it: docker-stack.yml deployed by the same code
as `make swarm-up` (swarm/deploy.py, stand-ins for the images this machine cannot pull) on
this engine's swarm -- a single-node one made for the test when the engine has none, left
again afterwards -- under a stack name of its own, its front door published on a free port.

It answers the ComposeStack methods the users'-path tests call (the front door is the same;
`compose exec SERVICE ...` becomes `docker exec` into one of the service's running tasks),
so those tests run unchanged against it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestration.processes import free_port
from swarm import deploy as swarm
from tests.compose_stack import QUIET_SCHEDULES, ROOT, ComposeStack, read_env_file, wait_for

TASK_SERVICE_LABEL = "com.docker.swarm.service.name"


def swarm_state() -> str:
    return subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class SwarmStack(ComposeStack):

    @classmethod
    def create(cls, workdir: Path, *, extra_files: tuple[str, ...] = (),
               **overrides: str) -> SwarmStack:
        from orchestration.generate_env import fill

        port = free_port()
        values = {"GATEWAY_PORT": str(port), "PUBLIC_URL": f"https://localhost:{port}",
                  **QUIET_SCHEDULES, **overrides}
        env_file = workdir / "stack.env"
        env_file.write_text(fill((ROOT / ".env.local").read_text(), values))
        return cls(f"onebox-swarm-{uuid.uuid4().hex[:6]}", env_file, read_env_file(env_file),
                   port, workdir / "gateway-ca.pem")

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
