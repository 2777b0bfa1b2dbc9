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
    # Measures the services from outside; nothing that ships imports it.
    "benchmarks": {*PACKAGES, "benchmarks"},
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
        # A concrete version tag; Prometheus spells its tags v2.55.1.
        assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", service["image"]), service["image"]


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
    return found & {*PACKAGES, "benchmarks"}


@pytest.mark.parametrize("package", [*PACKAGES, "benchmarks"])
def test_dependencies_point_one_way(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        wrong = imported_packages(path) - ALLOWED_IMPORTS[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


# --- monitoring: Prometheus scrapes services, Grafana reads Prometheus ----------------------

PROMETHEUS_CONFIG = yaml.safe_load((ROOT / "monitoring/prometheus/prometheus.yml").read_text())
# The Grafana files the grafana service must see, and where (another part of the repo
# owns their content; these paths are the contract).
GRAFANA_MOUNTS = {
    "monitoring/grafana/provisioning/datasources": "/etc/grafana/provisioning/datasources",
    "monitoring/grafana/provisioning/dashboards": "/etc/grafana/provisioning/dashboards",
    "monitoring/grafana/dashboards": "/var/lib/grafana/dashboards",
}


def bind_mounts(service: dict) -> dict[str, str]:
    """Repo folder (relative) -> container path, for the service's ./ mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[source[2:]] = target
    return mounts


def listen_ports(service: dict) -> set[int]:
    """Ports the service's process binds on all interfaces (command or environment)."""
    text = " ".join(str(v) for v in [*service.get("command", []),
                                     *(service.get("environment") or {}).values()])
    return {int(port) for port in re.findall(r"0\.0\.0\.0:(\d+)", text)}


def scrape_targets() -> list[tuple[str, str, str, int]]:
    """(job, metrics path, host, port) for every static target in prometheus.yml."""
    found = []
    for job in PROMETHEUS_CONFIG["scrape_configs"]:
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                found.append((job["job_name"], job.get("metrics_path", "/metrics"),
                              host, int(port)))
    return found


@pytest.mark.parametrize(("job", "path", "host", "port"), scrape_targets())
def test_every_scrape_target_is_a_service_listening_there_that_serves_metrics(
    job: str, path: str, host: str, port: int
) -> None:
    assert host in SERVICES, f"job {job} scrapes {host}, which is not a compose service"
    service = SERVICES[host]
    assert port in listen_ports(service), f"{host} does not listen on 0.0.0.0:{port}"
    # The route lives in the service's own package (the folder of its Dockerfile).
    package = (ROOT / service["build"]["dockerfile"]).parent
    sources = "\n".join(f.read_text() for f in package.glob("*.py"))
    assert f'"{path}"' in sources, f"{package.name}/ has no {path} route"


def test_prometheus_runs_the_repo_config_and_keeps_its_data_in_a_volume() -> None:
    prometheus = SERVICES["prometheus"]
    config_dir = bind_mounts(prometheus)["monitoring/prometheus"]
    command = " ".join(prometheus["command"])
    assert f"--config.file={config_dir}/prometheus.yml" in command
    assert "--storage.tsdb.retention.time=" in command
    data_dir = re.search(r"--storage\.tsdb\.path=(\S+)", command).group(1)
    assert f"prometheus-data:{data_dir}" in prometheus["volumes"]
    for rule_file in PROMETHEUS_CONFIG["rule_files"]:  # relative to the config, as mounted
        assert (ROOT / "monitoring/prometheus" / rule_file).is_file(), rule_file


def test_grafana_mounts_the_repo_provisioning_folders() -> None:
    grafana = SERVICES["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts == GRAFANA_MOUNTS
    for folder in mounts:
        assert (ROOT / folder).is_dir(), f"{folder} is mounted but not in the repo"
        assert any((ROOT / folder).iterdir()), f"{folder} is empty"
    assert "grafana-data:/var/lib/grafana" in grafana["volumes"]


def test_grafana_datasource_is_the_prometheus_service_and_dashboards_are_mounted() -> None:
    folder = ROOT / "monitoring/grafana/provisioning/datasources"
    datasources = [ds for f in sorted(folder.glob("*.y*ml"))
                   for ds in yaml.safe_load(f.read_text())["datasources"]]
    prometheus = [ds for ds in datasources if ds["type"] == "prometheus"]
    assert [ds["uid"] for ds in prometheus] == ["onebox-prometheus"]
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)/?", prometheus[0]["url"]).groups()
    assert host in SERVICES and int(port) in listen_ports(SERVICES[host])
    providers_folder = ROOT / "monitoring/grafana/provisioning/dashboards"
    paths = {provider["options"]["path"] for f in sorted(providers_folder.glob("*.y*ml"))
             for provider in yaml.safe_load(f.read_text())["providers"]}
    assert paths and paths <= set(GRAFANA_MOUNTS.values())


def test_every_named_volume_is_declared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("./", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"
