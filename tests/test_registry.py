"""Reaching the registry: a train run says plainly when MLflow does not answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core import registry
from operations import processes
from tests.conftest import settings_for


def test_an_unreachable_tracking_server_is_named_in_the_error(tmp_path: Path) -> None:
    port = processes.free_port()  # nothing listens there
    settings = settings_for(tmp_path).model_copy(
        update={"mlflow_tracking_uri": f"http://127.0.0.1:{port}"})
    with pytest.raises(registry.RegistryUnavailable, match=f"127.0.0.1:{port} does not answer"):
        registry.require_reachable(settings, timeout=2)


def test_a_server_that_answers_its_health_and_a_local_store_pass(tmp_path: Path) -> None:
    # A real HTTP server whose /health is a 200 (a file of that name).
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "health").write_text("OK")
    port = processes.free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(tmp_path / "site")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        processes.wait_until_healthy(f"http://127.0.0.1:{port}/health", server, timeout=30)
        settings = settings_for(tmp_path).model_copy(
            update={"mlflow_tracking_uri": f"http://127.0.0.1:{port}"})
        registry.require_reachable(settings)
        # A path that is not MLflow's health is a refusal, with its status.
        (tmp_path / "site" / "health").unlink()
        with pytest.raises(registry.RegistryUnavailable, match="answers /health with 404"):
            registry.require_reachable(settings)
    finally:
        server.terminate()
        server.wait(timeout=10)
    registry.require_reachable(settings_for(tmp_path))  # the embedded store: nothing to reach
