"""`make bench-swarm`: /predict req/s on Docker Swarm through the front door with 1, 2 and 3
predictor replicas, beside one replica's own port.

The stack is deployed as the swarm test deploys it (testkit/stacks.py: stand-in images,
a single-node swarm made for the run when the engine has none, removed at the end).  wrk
sends single records over 16 connections:

- direct: one replica's port 9696, published in host mode for this measurement (plain
  HTTP, the API key), alternating with the front door at 1 replica, so that the machine's
  other load falls on both;
- front door (TLS, nginx resolving the replicas by DNS, the key) at 1, 2 and 3 replicas.

On a machine with 2 cores the replicas share the same two cores as nginx, Docker and wrk
itself: this measures what the front door and the replicas cost, not scaling (more
replicas add processes, not cores).  Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from functools import partial
from pathlib import Path

from benchmarks.predictor.wrk import require_wrk, run_wrk
from benchmarks.stack import EXAMPLE
from operations.processes import free_port
from testkit.stacks import SwarmStack, build_standins, require_engine, swarm_state

say = partial(print, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.swarm",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="wrk duration per measurement (default 15)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements per configuration (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    return parser.parse_args(argv)


def measure(name: str, url: str, body: Path, key: str, args: argparse.Namespace,
            ) -> dict[str, float]:
    result = run_wrk(url, body, authorization=key, connections=args.connections, threads=2,
                     seconds=args.seconds)
    errors = result.non_2xx + result.socket_errors
    say(f"  {name:<28} {result.requests_per_second:8,.0f} req/s  p99 {result.p99_ms:6.1f} ms  "
        f"errors {errors}")
    return {"rps": result.requests_per_second, "p99_ms": result.p99_ms, "errors": errors}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_engine()
    require_wrk()
    build_standins()
    made_swarm = swarm_state() == "inactive"
    with tempfile.TemporaryDirectory(prefix="onebox-bench-swarm-") as tmp:
        scratch = Path(tmp)
        body = scratch / "single.json"
        body.write_text(json.dumps(EXAMPLE))
        stack = SwarmStack.create(scratch, N_TRIALS="3", PREDICTOR_REPLICAS="1")
        runs: dict[str, list[dict[str, float]]] = {}
        try:
            took = stack.deploy()
            say(f"deployed from nothing in {took:.0f} s")
            key = stack.key("predict")["Authorization"]
            front_door = stack.url("predictor", "/predict")
            port = free_port()
            stack.update("predictor", "--publish-add",
                         f"mode=host,published={port},target=9696")
            direct = f"http://127.0.0.1:{port}/predict"
            for url in (direct, front_door):  # warm both paths
                run_wrk(url, body, authorization=key, connections=args.connections,
                        threads=2, seconds=3)
            say(f"/predict, {args.connections} connections, {args.seconds:.0f} s each:")
            for _ in range(args.rounds):
                runs.setdefault("direct", []).append(
                    measure("1 replica, its own port", direct, body, key, args))
                runs.setdefault("front-1", []).append(
                    measure("front door, 1 replica", front_door, body, key, args))
            stack.update("predictor", "--publish-rm",
                         f"published={port},target=9696,mode=host,protocol=tcp")
            for replicas in (2, 3):
                stack.scale("predictor", replicas)
                run_wrk(front_door, body, authorization=key, connections=args.connections,
                        threads=2, seconds=5)  # the front door re-resolves; warm the new ones
                for _ in range(args.rounds):
                    runs.setdefault(f"front-{replicas}", []).append(measure(
                        f"front door, {replicas} replicas", front_door, body, key, args))
        finally:
            stack.remove()
            if made_swarm:
                subprocess.run(["docker", "swarm", "leave", "--force"], check=False,
                               capture_output=True)
    base = median(runs["direct"], "rps")
    say("\nmedians:")
    say(f"  {'path':<28} {'req/s':>8} {'p99 ms':>7} {'× direct':>9} errors")
    for name, label in (("direct", "1 replica, its own port"),
                        ("front-1", "front door, 1 replica"),
                        ("front-2", "front door, 2 replicas"),
                        ("front-3", "front door, 3 replicas")):
        rps = median(runs[name], "rps")
        say(f"  {label:<28} {rps:8,.0f} {median(runs[name], 'p99_ms'):7.1f} "
            f"{rps / base:9.2f} {sum(r['errors'] for r in runs[name]):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
