"""The compose stack, checked without Docker: schema-valid, and held together with the code."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.settings import Settings, SettingsError
from server.process import predictor_argv

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PACKAGES = ("core", "server", "simulation", "monitoring", "reporting", "orchestration")
# Who may import whom (DESIGN.md): dependencies point one way, no cycles.
ALLOWED_IMPORTS = {
    "core": {"core"},
    "server": {"core", "server"},
    "simulation": {"core", "simulation"},
    "monitoring": {"core", "monitoring"},
    "reporting": {"core", "monitoring", "reporting"},
    "orchestration": set(PACKAGES),
}


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
         "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mlflow_folder_is_not_a_python_package() -> None:
    assert (ROOT / "mlflow" / "Dockerfile").exists()
    assert not list((ROOT / "mlflow").glob("*.py"))


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_buildable_or_pinned(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        dockerfile = ROOT / service["build"].get("context", ".") / service["build"]["dockerfile"]
        assert dockerfile.exists(), dockerfile
        assert re.search(r"^FROM \S+:\d", dockerfile.read_text(), re.M), "unpinned base image"
    else:
        assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", service["image"]), service["image"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_long_running_services_have_healthchecks_and_dependencies_conditions(name: str) -> None:
    service = SERVICES[name]
    if service.get("restart") == "unless-stopped" and name != "prefect-worker":
        assert "healthcheck" in service, f"{name} has no healthcheck"
    for dependency, spec in (service.get("depends_on") or {}).items():
        assert dependency in SERVICES
        assert spec["condition"] in ("service_healthy", "service_completed_successfully")


def test_the_container_runs_the_predictor_command_the_local_runner_runs() -> None:
    expected = predictor_argv(python="python")
    assert SERVICES["predictor"]["command"] == expected
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "server/Dockerfile").read_text(), re.M)
    assert cmd and ast.literal_eval(cmd.group(1)) == expected


def test_required_compose_variables_are_set_in_both_env_files() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required
    for env_file in (".env.local", ".env.cloud"):
        env = read_env_file(ROOT / env_file)
        assert required <= set(env), f"{env_file} lacks {sorted(required - set(env))}"


def test_every_setting_is_documented_in_env_local() -> None:
    source = (ROOT / "core" / "settings.py").read_text()
    names = set(re.findall(r'env\.get\("(\w+)"', source))
    names |= set(re.findall(r'_(?:int|float|switch)\(env, "(\w+)"', source))
    documented = set(re.findall(r"^#?\s*(\w+)=", (ROOT / ".env.local").read_text(), re.M))
    assert names and names <= documented, sorted(names - documented)


def test_env_cloud_placeholders_stop_the_service_until_replaced() -> None:
    env = read_env_file(ROOT / ".env.cloud")
    with pytest.raises(SettingsError, match="POSTGRES_PASSWORD"):
        Settings.from_env(env)
    Settings.from_env(read_env_file(ROOT / ".env.local"))


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        wrong = imported_packages(path) - ALLOWED_IMPORTS[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
