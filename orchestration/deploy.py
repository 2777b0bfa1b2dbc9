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
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

REPO_ROOT = Path(__file__).resolve().parent.parent


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
        DeploymentSpec("report", "orchestration/flows.py:report",
                       env.get("REPORT_CRON", "0 */3 * * *"),
                       "Drift report of the newest window, for the reports site."),
        DeploymentSpec("drift-check", "orchestration/flows.py:drift_check",
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
    register(args.work_pool, deployment_specs(os.environ))


if __name__ == "__main__":
    main()
