"""Register the stack's Prefect deployments (idempotent: running it twice changes nothing).

| deployment         | flow         | schedule (default)   |
|--------------------|--------------|----------------------|
| train/train        | train        | daily, 03:00         |
| report/report      | report       | every 3 hours        |
| drift-check/drift-check | drift-check | hourly          |

All run on the `process` work pool WORK_POOL (default `onebox`), from this
repository's folder, so a worker started in the same folder (the container's
/app, or the checkout) runs them.  Every parameter has a default; the UI's
"Quick run" starts one with those.

It also makes sure of one automation, "Crash unresponsive flow runs" (Prefect's recipe
for zombie runs): a run whose heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set on the
worker) stop for UNRESPONSIVE_SECONDS -- its worker killed, its container gone -- is
marked Crashed instead of staying Running for ever.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from operations.processes import wait_until_healthy

REPO_ROOT = Path(__file__).resolve().parent.parent
UNRESPONSIVE_AUTOMATION = "Crash unresponsive flow runs"
# Three missed heartbeats at the worker's PREFECT_FLOWS_HEARTBEAT_FREQUENCY (30 s).
UNRESPONSIVE_SECONDS = 90
# `docker compose restart` (or a host's reboot) starts this one-off beside the Prefect
# server, not after its health check as `up` does: it waits for the server's API this long
# instead of failing on a refused connection (it did in CI, and `up --wait` then failed).
SERVER_WAIT_SECONDS = 180


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    cron: str
    description: str


def deployment_specs(env: Mapping[str, str]) -> tuple[DeploymentSpec, ...]:
    """The stack's deployments, with schedules from TRAIN_CRON / REPORT_CRON / DRIFT_CHECK_CRON."""
    return (
        DeploymentSpec("train", "orchestration/train.py:train",
                       env.get("TRAIN_CRON", "0 3 * * *"),
                       "Search, register, and promote through the gate."),
        DeploymentSpec("report", "orchestration/report.py:report",
                       env.get("REPORT_CRON", "0 */3 * * *"),
                       "Drift report of the newest window, for the reports site."),
        DeploymentSpec("drift-check", "orchestration/drift_check.py:drift_check",
                       env.get("DRIFT_CHECK_CRON", "0 * * * *"),
                       "Start a train run when drift or live quality crosses its threshold."),
    )


async def ensure_work_pool(name: str) -> bool:
    """Create the process work pool if missing; True when it was created."""
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return False
    return True


def unresponsive_runs_automation(within_seconds: float) -> AutomationCore:
    """A run that sent a heartbeat and then neither another nor a final state within
    `within_seconds` is marked Crashed (one automation, each run apart)."""
    return AutomationCore(
        name=UNRESPONSIVE_AUTOMATION,
        description="A flow run whose heartbeats stopped (its worker or container died) is "
                    "marked Crashed instead of staying Running.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=within_seconds)),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {within_seconds:.0f} s: its worker or container "
                    "stopped while it ran.")],
    )


async def ensure_unresponsive_runs_automation(within_seconds: float) -> bool:
    """Create (or bring up to date) the automation; True when it was created."""
    wanted = unresponsive_runs_automation(within_seconds)
    async with get_client() as client:
        existing = await client.read_automations_by_name(UNRESPONSIVE_AUTOMATION)
        if existing:
            await client.update_automation(existing[0].id, wanted)
            return False
        await client.create_automation(wanted)
    return True


def register(work_pool: str, specs: tuple[DeploymentSpec, ...]) -> list[str]:
    """Create or update every deployment; returns their ids."""
    asyncio.run(ensure_work_pool(work_pool))
    ids = []
    for spec in specs:
        flow = Flow.from_source(source=str(REPO_ROOT), entrypoint=spec.entrypoint)
        deployment_id = flow.deploy(
            name=spec.name, work_pool_name=work_pool, cron=spec.cron,
            description=spec.description, build=False, push=False,
            print_next_steps=False, ignore_warnings=True,
        )
        ids.append(str(deployment_id))
        print(f"deployment {flow.name}/{spec.name}: cron {spec.cron!r} on pool {work_pool}")
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-pool", default=os.environ.get("WORK_POOL", "onebox"))
    args = parser.parse_args(argv)
    api_url = PREFECT_API_URL.value()
    if api_url:  # none: an ephemeral server in this process, nothing to wait for
        wait_until_healthy(f"{api_url.rstrip('/')}/health", timeout=SERVER_WAIT_SECONDS)
    register(args.work_pool, deployment_specs(os.environ))
    within = float(os.environ.get("UNRESPONSIVE_SECONDS", UNRESPONSIVE_SECONDS))
    created = asyncio.run(ensure_unresponsive_runs_automation(within))
    print(f"automation {UNRESPONSIVE_AUTOMATION!r} ({within:.0f} s): "
          f"{'created' if created else 'up to date'}")


if __name__ == "__main__":
    main()
