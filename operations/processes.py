"""Start and stop the stack's long-running services as local processes (no Docker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import requests
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from server.process import start_command

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ServiceNotReady(RuntimeError):
    pass


def wait_until_healthy(url: str, process: subprocess.Popen | None = None,
                       timeout: float = 120.0) -> dict:
    """Poll `url` until it answers 200; fail fast if `process` exits first."""

    @retry(stop=stop_after_delay(timeout), wait=wait_fixed(0.5),
           retry=retry_if_exception_type(ServiceNotReady), reraise=True)
    def probe() -> dict:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with code {process.returncode} "
                               f"before {url} was healthy")
        try:
            resp = requests.get(url, timeout=2)
        except requests.RequestException as exc:
            raise ServiceNotReady(str(exc)) from exc
        if resp.status_code != 200:
            raise ServiceNotReady(f"{url} answered {resp.status_code}")
        try:
            return resp.json()
        except ValueError:  # a plain-text probe (Prometheus's /-/ready): 200 is the answer
            return {}

    return probe()


def start_predictor(port: int, env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """gunicorn serving the predictor on 127.0.0.1:port, output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            start_command(bind=f"127.0.0.1:{port}"),
            env={**os.environ, **env}, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen, timeout: float = 45.0) -> int:
    """SIGTERM (gunicorn's graceful shutdown: workers drain their prediction log), then wait.

    The timeout is above gunicorn's graceful_timeout (30 s), so a slow drain is not killed.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode
