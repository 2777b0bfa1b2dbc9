"""The servers the benchmark compares, each on a free loopback port, always stopped.

The predictor starts from the same command line as everywhere else
(`server.process.start_command`).  Servers here are stopped by process group
(`mlflow models serve` leaves a uvicorn child behind its leader), unlike
operations/processes.py's single-process stop.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import requests
from psycopg2 import sql

from core.store import PredictionStore
from operations.processes import free_port
from server.process import GUNICORN_CONFIG, start_command

REPO_ROOT = Path(__file__).resolve().parents[2]
CEILING_APP = "benchmarks.predictor.ceiling:create_app()"

# Settings a caller's environment may hold (`make` exports ONEBOX_HOME, a shell may have
# the stack's URLs) that would point a benchmark server at someone else's state or change
# what is measured.  Dropped from every child's environment; the bench sets its own.
# PREDICTOR_WORKERS / PREDICTOR_THREADS stay: they tune ceiling and predictor alike.
FOREIGN_STATE = (
    "APP_ENV", "ONEBOX_HOME", "DATA_PATH", "SCHEMA_PATH", "MODEL_NAME",
    "MLFLOW_TRACKING_URI", "MLFLOW_ARTIFACT_ROOT", "MLFLOW_EXPERIMENT",
    "PREDICTION_STORE_URL", "PREDICTION_LOG", "MODEL_CACHE_DIR", "SPOOL_DIR", "REPORTS_DIR",
    "MAX_BATCH_RECORDS", "MAX_BODY_BYTES", "PREDICTOR_BIND", "PREDICTOR_ACCESS_LOG",
    "PROMETHEUS_MULTIPROC_DIR", "PREFECT_API_URL", "PREFECT_HOME",
)
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# Above gunicorn's graceful_timeout (30 s): a predictor writing its queued log is not killed.
STOP_TIMEOUT = 45.0


class ServerFailed(RuntimeError):
    """A server did not start, or did not answer the benchmark's request with a 200."""


def child_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_STATE}
    # `mlflow models serve` runs `bash -c "exec uvicorn ..."`: the venv's scripts must be on
    # PATH even when the bench runs as .venv/bin/python without an activated venv.
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return {**env, **QUIET, "PATH": path, **settings}


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """A server in a process group of its own (so its workers are stopped with it)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), env=dict(env), cwd=REPO_ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to the server's process group, wait; SIGKILL what is left after `timeout`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    # The leader may be gone while a child it started (uvicorn's) is still exiting.
    while time.monotonic() < deadline and _group_alive(process.pid):
        time.sleep(0.1)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_up(process: subprocess.Popen, url: str, log_path: Path, name: str,
                  timeout: float) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"{name} exited with code {process.returncode} before it was "
                               f"up; its log ends:\n{log_tail(log_path)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise ServerFailed(f"{name} not up after {timeout:.0f} s; its log ends:\n"
                       f"{log_tail(log_path)}")


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's processes (its group: master and workers).

        Throughput on a shared machine moves with everyone else's load; the CPU a
        server spends per request moves much less, so the bench reports both.
        """
        return group_cpu_seconds(self.process.pid)


def group_cpu_seconds(pgid: int) -> float:
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        # Fields after the parenthesised command name: state ppid pgrp ... utime stime.
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(argv: Sequence[str], port: int, health_path: str, env: Mapping[str, str],
            log_path: Path, name: str, timeout: float) -> Iterator[Server]:
    process = start(argv, env, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(process, url + health_path, log_path, name, timeout)
        yield Server(url, process)
    finally:
        stop(process)


def ceiling(env: Mapping[str, str], log_path: Path) -> AbstractContextManager[Server]:
    """The constant-answer app under the predictor's gunicorn config file; yields it."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG,
            "--bind", f"127.0.0.1:{port}", CEILING_APP]
    return serving(argv, port, "/health", env, log_path, "the ceiling app", timeout=60)


def onebox(env: Mapping[str, str], log_path: Path) -> AbstractContextManager[Server]:
    """The predictor, from the command line the container and `make serve` use."""
    port = free_port()
    return serving(start_command(bind=f"127.0.0.1:{port}"), port, "/health", env, log_path,
                   "the onebox predictor", timeout=120)


def mlflow_serve(model_uri: str, env: Mapping[str, str], log_path: Path,
                 workers: int | None = None) -> AbstractContextManager[Server]:
    """`mlflow models serve` in the bench's own Python environment; yields it."""
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    # Cold start: import mlflow, copy the model out of the registry, start uvicorn.
    return serving(argv, port, "/ping", env, log_path, "mlflow models serve", timeout=180)


def require_ok(url: str, body: bytes, name: str, expect_key: str, *,
               authorization: str | None = None) -> dict:
    """POST `body` once; the benchmark measures only a server that answers it with a 200."""
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    resp = requests.post(url, data=body, headers=headers, timeout=30)
    if resp.status_code != 200 or expect_key not in resp.text:
        raise ServerFailed(f"{name} answered {resp.status_code} to the benchmark's request: "
                           f"{resp.text[:500]}")
    return resp.json()


def answered_predictions(url: str) -> int:
    """Records the predictor scored, summed over its workers (its own Prometheus counter)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return round(sum(float(m.group(1)) for m in re.finditer(
        r"^onebox_predictions_total\{[^}]*\}\s+(\S+)$", text, re.MULTILINE)))


@contextmanager
def temporary_database(admin_dsn: str) -> Iterator[str]:
    """A new PostgreSQL database on `admin_dsn`'s server with the prediction log's tables
    (migrated, as the stack's setup step does), dropped afterwards; yields its DSN."""
    name = f"onebox_bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            dsn = f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
            store = PredictionStore(dsn)
            store.migrate()
            store.dispose()
            yield dsn
        finally:
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                            .format(sql.Identifier(name)))
    finally:
        admin.close()


def count_rows(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM predictions")
            (count,) = cur.fetchone()
    finally:
        conn.close()
    return int(count)
