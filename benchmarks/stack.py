"""`make bench-stack`: the compose stack's figures, measured on this machine in one run.

- image: the onebox image's size; a cold build (no cache) of it and of the stand-ins;
  a code-only rebuild (one file of server/ changed, in a copy of the build context);
- start: `up` on empty volumes (images built) to the first answered /predict, and to
  every service healthy;
- memory: each container's and the total after `--idle` seconds (default 120) of no
  traffic, from `docker stats`;
- speed: /predict req/s through the front door (TLS, nginx, an API key) beside the same
  predictor run as a local process (`make serve`'s command line, plain HTTP, no key) on
  the same champion, alternating, with wrk (16 connections, single records, the
  prediction log on PostgreSQL for both).

It runs the stack with the offline override (tests/stack/), as the tests do, under a
project name of its own, and takes it down (volumes included) at the end.  Numbers move
with the machine's other load: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import requests
import urllib3

from benchmarks.predictor import servers
from benchmarks.predictor.wrk import require_wrk, run_wrk
from testkit.stacks import ROOT, ComposeStack, build_standins, require_engine, wait_for

say = partial(print, flush=True)
STANDIN_IMAGE = "onebox-python:standin"
STANDIN_BASE = "onebox-standin/python:3.11"
# The build context as .dockerignore lets it in (what a code-only rebuild sends).
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "constraints.txt", "pyproject.toml")
CONTEXT_FOLDERS = ("core", "server", "simulation", "monitoring", "reporting", "orchestration",
                   "operations", "mlflow")
GOALS = {"memory_total_mib": 2.5 * 1024, "image_gb": 1.5, "code_rebuild_s": 30.0,
         "first_predict_s": 180.0}
EXAMPLE = {"customer_age": 45, "gender": "M", "dependent_count": 3, "education_level": 3,
           "marital_status": "married", "income_category": 2, "card_category": "blue",
           "months_on_book": 39, "total_relationship_count": 5, "credit_limit": 12691.0,
           "total_revolving_bal": 777.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stack",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=120.0,
                        help="seconds of no traffic before memory is read (default 120)")
    parser.add_argument("--skip-cold", action="store_true",
                        help="skip the cold (no-cache) builds, ~5 minutes")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="wrk duration per measurement (default 15)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of container and local process (default 3)")
    parser.add_argument("--admin-dsn",
                        default=os.environ.get("TEST_POSTGRES_DSN",
                                               "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="PostgreSQL for the local predictor's log (a temp database)")
    return parser.parse_args(argv)


def timed(argv: list[str], **kwargs: object) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore
    return time.monotonic() - started


def build_image(context: Path, *, no_cache: bool = False) -> float:
    return timed(["docker", "build", "--quiet", *(["--no-cache"] if no_cache else []),
                  "--build-arg", f"PYTHON_IMAGE={STANDIN_BASE}", "--tag", STANDIN_IMAGE,
                  str(context)])


def copy_context(target: Path) -> Path:
    for name in CONTEXT_FILES:
        shutil.copy2(ROOT / name, target / name)
    for name in CONTEXT_FOLDERS:
        shutil.copytree(ROOT / name, target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def image_figures(cold: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    if cold:
        say("cold builds (no cache): the stand-ins, then the onebox image ...")
        figures["cold_standins_s"] = timed(["bash", str(ROOT / "tests/stack/standins/build.sh"),
                                            "--rebuild"])
        figures["cold_image_s"] = build_image(ROOT, no_cache=True)
    else:
        build_standins()
        build_image(ROOT)
    with tempfile.TemporaryDirectory(prefix="onebox-context-") as tmp:
        context = copy_context(Path(tmp))
        build_image(context)  # the cache is warm for exactly this content
        edited = context / "server" / "app.py"
        edited.write_text(edited.read_text() + f"\n# bench-stack edit {time.time()}\n")
        figures["code_rebuild_s"] = build_image(context)
    build_image(ROOT)  # the tag back on the repository's own code
    size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", STANDIN_IMAGE],
                          capture_output=True, text=True, check=True).stdout
    figures["image_gb"] = int(size) / 1e9
    return figures


def first_prediction(stack: ComposeStack) -> tuple[float, float]:
    """Seconds from `up` on empty volumes to the first 200 from /predict, and to healthy."""
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", timeout=900)

    def answered() -> bool | None:
        # Through the front door with the client key, as a client would; its certificate is
        # not fetched yet (it is made during this very start), so not checked by this probe.
        answer = requests.post(stack.url("predictor", "/predict"), json=EXAMPLE, timeout=5,
                               headers=stack.key("predict"), verify=False)
        return True if answer.status_code == 200 else None

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    wait_for("the first /predict answer", answered, timeout=900, interval=0.5)
    first = time.monotonic() - started
    stack.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "900", timeout=960)
    stack.fetch_ca()
    return first, time.monotonic() - started


def memory(stack: ComposeStack) -> dict[str, float]:
    """MiB per service, from one `docker stats` reading."""
    ids = stack.labelled("container")
    done = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
                          capture_output=True, text=True, check=True)
    out = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        used = row["MemUsage"].split("/")[0].strip()
        number, unit = float(used.rstrip("KMGiB")), used.lstrip("0123456789.")
        mib = number * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "B": 1 / 2**20}[unit]
        service = row["Name"].removeprefix(stack.project + "-").rsplit("-", 1)[0]
        out[service] = mib
    return out


def container_cpu_seconds(container_id: str) -> float | None:
    """CPU time used so far by a container (its cgroup), or None where it cannot be read."""
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage", 1e-9),
                        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat",
                         1e-6),
                        (f"/sys/fs/cgroup/docker/{container_id}/cpu.stat", 1e-6)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpu.stat"):  # cgroup v2: "usage_usec N"
            text = next(line.split()[1] for line in text.splitlines()
                        if line.startswith("usage_usec"))
        return int(text) * scale
    return None


def proxy_cpu_seconds(host_port: int) -> float:
    """CPU time of Docker's userland proxy for `host_port`: loopback connections to a
    published port go through it (outside the container's cgroup)."""
    total = 0.0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            if not argv[0].endswith(b"docker-proxy") or \
                    str(host_port).encode() not in argv[argv.index(b"-host-port") + 1:][:1]:
                continue
            text = (cmdline.parent / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measured(name: str, url: str, body: Path, cpu: Callable[[], float | None],
             load: dict[str, float], authorization: str | None) -> dict[str, float | None]:
    before = cpu()
    result = run_wrk(url, body, authorization=authorization, **load)  # type: ignore[arg-type]
    after = cpu()
    cpu_ms = (None if before is None or after is None
              else (after - before) * 1000 / max(result.requests, 1))
    say(f"  {name:<22} {result.requests_per_second:8,.0f} req/s  p99 {result.p99_ms:5.1f} ms  "
        f"CPU {'n/a' if cpu_ms is None else f'{cpu_ms:.2f} ms'}/request  "
        f"errors {result.non_2xx + result.socket_errors}")
    return {"rps": result.requests_per_second, "p99_ms": result.p99_ms, "cpu_ms": cpu_ms,
            "errors": float(result.non_2xx + result.socket_errors)}


def _sum(*parts: float | None) -> float | None:
    return None if any(part is None for part in parts) else sum(parts)  # type: ignore[arg-type]


def container_id(stack: ComposeStack, service: str) -> str:
    [short] = [c["ID"] for c in stack.containers(all_states=False) if c["Service"] == service]
    return subprocess.run(["docker", "inspect", "--format", "{{.Id}}", short],
                          capture_output=True, text=True, check=True).stdout.strip()


def throughput(stack: ComposeStack, args: argparse.Namespace, scratch: Path,
               ) -> dict[str, float]:
    """req/s through the front door (TLS, nginx, an API key) and of the same predictor as a
    local process (`make serve`: plain HTTP, no key), measured alternately (container,
    local, container, local) so that the machine's other load falls on both; the medians
    are compared.  The container path's CPU counts the predictor, the front door and
    Docker's port proxy."""
    body = scratch / "single.json"
    body.write_text(json.dumps(EXAMPLE))
    load = {"connections": 16, "threads": 2, "seconds": args.seconds}
    warm = {**load, "seconds": 3}
    ids = [container_id(stack, service) for service in ("predictor", "gateway")]
    key = stack.key("predict")["Authorization"]
    log_path = scratch / "local-predictor.log"
    runs: dict[str, list[dict[str, float | None]]] = {"container": [], "local": []}
    with servers.temporary_database(args.admin_dsn) as database:
        # The local predictor follows the stack's registry through the front door, with the
        # people's login (MLflow's client sends it) and the stack's certificate.
        user, password = stack.admin
        env = servers.child_env(
            ONEBOX_HOME=str(scratch / "home"), MLFLOW_TRACKING_URI=stack.url("mlflow"),
            MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password,
            MLFLOW_TRACKING_SERVER_CERT_PATH=str(stack.ca_file),
            PREDICTION_STORE_URL=database, PREDICTOR_WORKERS=stack.setting("PREDICTOR_WORKERS"),
            PREDICTOR_THREADS=stack.setting("PREDICTOR_THREADS"))
        with servers.onebox(env, log_path) as local:
            targets = {
                "container": (stack.url("predictor", "/predict"), key, lambda: _sum(
                    *(container_cpu_seconds(i) for i in ids), proxy_cpu_seconds(stack.port))),
                "local": (f"{local.url}/predict", None, local.cpu_seconds),
            }
            for url, authorization, _ in targets.values():
                run_wrk(url, body, authorization=authorization, **warm)  # type: ignore[arg-type]
            say(f"/predict, 16 connections, {args.seconds:.0f} s each, alternating:")
            for _ in range(args.rounds):
                for name, (url, authorization, cpu) in targets.items():
                    label = "front door (TLS, key)" if name == "container" else "local process"
                    runs[name].append(measured(label, url, body, cpu, load, authorization))
    out: dict[str, float] = {}
    for name, results in runs.items():
        for key in ("rps", "p99_ms", "cpu_ms"):
            values = [r[key] for r in results if r[key] is not None]
            if values:
                out[f"{name}_{key}"] = statistics.median(values)
        out[f"{name}_errors"] = sum(r["errors"] or 0 for r in results)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_engine()
    require_wrk()
    with tempfile.TemporaryDirectory(prefix="onebox-bench-stack-") as tmp:
        scratch = Path(tmp)
        figures = image_figures(cold=not args.skip_cold)
        stack = ComposeStack.create(scratch)
        try:
            stack.down(volumes=True)
            first, healthy = first_prediction(stack)
            figures |= {"first_predict_s": first, "all_healthy_s": healthy}
            say(f"idle {args.idle:.0f} s before reading memory ...")
            time.sleep(args.idle)
            mib = memory(stack)
            figures |= throughput(stack, args, scratch)
        finally:
            stack.down(volumes=True)
    report(figures, mib, args)
    return 0


def report(figures: dict[str, float], mib: dict[str, float], args: argparse.Namespace) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    say("\n================ onebox bench-stack ================")
    say(f"machine          {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if "cold_image_s" in figures:
        say(f"cold build       stand-ins {figures['cold_standins_s']:.0f} s, "
            f"onebox image {figures['cold_image_s']:.0f} s (no cache)")
    say(f"image            {figures['image_gb']:.2f} GB on the Python stand-in base "
        f"(goal <= {GOALS['image_gb']} GB) {verdict(figures['image_gb'] <= GOALS['image_gb'])}")
    say(f"code rebuild     {figures['code_rebuild_s']:.1f} s (one file of server/ changed; "
        f"goal <= {GOALS['code_rebuild_s']:.0f} s) "
        f"{verdict(figures['code_rebuild_s'] <= GOALS['code_rebuild_s'])}")
    say(f"first /predict   {figures['first_predict_s']:.0f} s after `up` on empty volumes "
        f"(bootstrap training included; goal <= {GOALS['first_predict_s']:.0f} s) "
        f"{verdict(figures['first_predict_s'] <= GOALS['first_predict_s'])}; "
        f"all healthy at {figures['all_healthy_s']:.0f} s")
    total = sum(mib.values())
    say(f"memory           after {args.idle:.0f} s idle, MiB (docker stats):")
    for service, value in sorted(mib.items(), key=lambda kv: -kv[1]):
        say(f"                   {service:<16} {value:7.0f}")
    say(f"                   {'total':<16} {total:7.0f}  (goal <= {GOALS['memory_total_mib']:.0f}"
        f" without Grafana) {verdict(total <= GOALS['memory_total_mib'])}")
    ratio = figures["container_rps"] / figures["local_rps"]
    cpu = ""
    if "container_cpu_ms" in figures and "local_cpu_ms" in figures:
        cpu = (f"; CPU a request {figures['container_cpu_ms']:.2f} ms (predictor, front door "
               f"and Docker's port proxy) vs {figures['local_cpu_ms']:.2f} ms")
    say(f"/predict         medians of {args.rounds} alternating runs: through the front door "
        f"{figures['container_rps']:,.0f} req/s (p99 {figures['container_p99_ms']:.1f} ms), "
        f"the same predictor as a local process {figures['local_rps']:,.0f} req/s "
        f"(p99 {figures['local_p99_ms']:.1f} ms): {ratio:.2f}x{cpu}; errors "
        f"{figures['container_errors']:.0f} / {figures['local_errors']:.0f}")


if __name__ == "__main__":
    sys.exit(main())
