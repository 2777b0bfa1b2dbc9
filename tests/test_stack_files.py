"""The compose stack, checked without Docker: schema-valid, and held together with the code."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.settings import Settings, SettingsError
from monitoring.alertmanager import render
from server.process import COMMAND, start_command
from testkit.stacks import read_env_file

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
         "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mlflow_folder_is_not_a_python_package() -> None:
    assert (ROOT / "mlflow" / "start-mlflow.sh").exists()
    assert not list((ROOT / "mlflow").glob("*.py"))


DOCKERFILE = (ROOT / "Dockerfile").read_text()
ONEBOX_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
UPSTREAM_SERVICES = sorted(name for name, service in SERVICES.items() if "build" not in service)


def test_every_python_service_runs_the_one_image() -> None:
    assert len(ONEBOX_SERVICES) >= 8, ONEBOX_SERVICES
    images = {SERVICES[name]["image"] for name in ONEBOX_SERVICES}
    builds = {(SERVICES[name]["build"]["context"], SERVICES[name]["build"]["dockerfile"])
              for name in ONEBOX_SERVICES}
    assert len(images) == 1 and builds == {(".", "Dockerfile")}, (images, builds)


def test_the_image_base_is_pinned_and_replaceable_by_a_build_arg() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert default and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", default.group(1))
    stages = re.findall(r"^FROM (.+)$", DOCKERFILE, re.M)
    assert stages and all(re.fullmatch(r"\$\{PYTHON_IMAGE\}( AS \w+)?", s) for s in stages)


def test_the_image_installs_dependencies_before_it_copies_code() -> None:
    """A code-only change must not reinstall ~1 GB of dependencies."""
    lines = DOCKERFILE.splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    first_code = next(i for i, line in enumerate(lines) if re.match(r"COPY (core|server) ", line))
    assert install < first_code
    final_stage = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    copied_before_install = [line.split()[-1] for line in lines[final_stage:install]
                             if line.startswith("COPY")]
    assert copied_before_install == ["/opt/onebox/requirements.txt",
                                     "/opt/onebox/constraints.txt"]


@pytest.mark.parametrize("name", UPSTREAM_SERVICES)
def test_upstream_images_are_pinned(name: str) -> None:
    # A concrete version tag; Prometheus spells its tags v2.55.1.
    image = SERVICES[name]["image"]
    assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", image), image


def image_folders_owned_by_the_service_user() -> set[str]:
    """Folders the Dockerfile creates (mkdir -p) under a tree it chowns to the service user."""
    run = re.search(r"RUN useradd.*?(?=\n\n)", DOCKERFILE, re.S).group(0)
    made = set(re.findall(r"(/[\w/.-]+)", run.split("mkdir -p", 1)[1].split("&&", 1)[0]))
    owned = set(re.findall(r"chown -R onebox:onebox ([\w/ .-]+)", run)[0].split())
    return {folder for folder in made if any(folder.startswith(root) for root in owned)}


# One-off steps of the onebox image that run as root, each for one reason: the volume it
# writes has no folder in the image, so Docker makes that folder root-owned.
ROOT_ONE_OFFS: set[str] = set()


@pytest.mark.parametrize("name", ONEBOX_SERVICES)
def test_every_volume_a_python_service_mounts_is_a_folder_the_image_owns(name: str) -> None:
    """A named volume takes the ownership of the image's folder on first use; a folder the
    image lacks comes up root-owned, and the non-root service cannot write it (the
    predictor restarted forever on its model cache for exactly this)."""
    if SERVICES[name].get("user") == "root":  # can write a root-owned folder: see below
        return
    owned = image_folders_owned_by_the_service_user()
    for source, target in volume_mounts(SERVICES[name]):
        if not source.startswith(("./", "/")):
            assert target in owned, f"{name} mounts {source} at {target}, not made in the image"


def test_only_named_one_off_steps_run_as_root() -> None:
    """Everything long-running runs as the image's user; a root one-off writes one volume
    and exits."""
    as_root = {name for name, service in SERVICES.items() if service.get("user") == "root"}
    assert as_root == ROOT_ONE_OFFS
    for name in as_root:
        assert SERVICES[name]["restart"] == "no", name
        assert len(SERVICES[name]["volumes"]) == 1, name


def volume_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume; ${VAR:-default} read as its default."""
    out = []
    for volume in service.get("volumes", []):
        volume = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volume)
        source, target, *_ = volume.split(":")
        out.append((source, target))
    return out


def test_the_front_door_sees_only_the_reports_and_its_own_material() -> None:
    named = [(s, t) for s, t in volume_mounts(SERVICES["gateway"]) if not s.startswith("./")]
    assert named == [("gateway", "/etc/onebox/gateway"), ("reports", "/srv/reports")]
    assert all(v.endswith(":ro") for v in SERVICES["gateway"]["volumes"])


def test_the_container_runs_the_predictor_command_the_local_runner_runs() -> None:
    """The start command is written once (server/process.py); the image, compose and
    Kubernetes run it, and so does the local runner, with its bind address."""
    expected = list(COMMAND)
    assert SERVICES["predictor"]["command"] == expected
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    assert cmd and ast.literal_eval(cmd.group(1)) == expected
    [deployment] = [doc for doc in yaml.safe_load_all(
        (ROOT / "kubernetes/manifests/predictor.yaml").read_text()) if doc["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == expected
    assert start_command("127.0.0.1:1", python="python") == [*expected, "--bind", "127.0.0.1:1"]
    for path in ("operations/processes.py", "benchmarks/predictor/servers.py"):
        assert "start_command(" in (ROOT / path).read_text(), path
    # Nothing else spells the gunicorn line out.
    for path in ("Dockerfile", "docker-compose.yml", "kubernetes/manifests/predictor.yaml"):
        assert "server.app:create_app()" not in (ROOT / path).read_text(), path


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
    names |= set(re.findall(r'_env\("(\w+)"', source))
    documented = set(re.findall(r"^#?\s*(\w+)=", (ROOT / ".env.local").read_text(), re.M))
    assert names and names <= documented, sorted(names - documented)


def test_env_cloud_placeholders_stop_the_service_until_replaced() -> None:
    env = read_env_file(ROOT / ".env.cloud")
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        Settings.from_env(env)
    Settings.from_env(read_env_file(ROOT / ".env.local"))


def test_no_known_password_is_committed() -> None:
    """The templates leave every secret empty; make up generates them."""
    from operations.generate_env import SECRETS

    for env_file in (".env.local", ".env.cloud"):
        env = read_env_file(ROOT / env_file)
        assert {name: env[name] for name in SECRETS} == dict.fromkeys(SECRETS, ""), env_file


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
    for source, target in volume_mounts(service):
        if source.startswith("./"):
            mounts[source[2:]] = target
    return mounts


def listen_ports(service: dict) -> set[int]:
    """Ports the service's process binds on all interfaces (command or environment)."""
    text = " ".join(str(v) for v in [*service.get("command", []),
                                     *(service.get("environment") or {}).values()])
    return {int(port) for port in re.findall(r"0\.0\.0\.0:(\d+)", text)}


def scrape_targets() -> list[tuple[str, str, str, int]]:
    """(job, metrics path, host, port) for every target in prometheus.yml: static, or
    discovered by DNS (every address of a service name, on one port)."""
    found = []
    for job in PROMETHEUS_CONFIG["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                found.append((job["job_name"], path, host, int(port)))
        for discovery in job.get("dns_sd_configs", []):
            assert discovery["type"] == "A", discovery  # a service name's addresses
            found += [(job["job_name"], path, name, discovery["port"])
                      for name in discovery["names"]]
    return found


@pytest.mark.parametrize(("job", "path", "host", "port"), scrape_targets())
def test_every_scrape_target_is_a_service_listening_there_that_serves_metrics(
    job: str, path: str, host: str, port: int
) -> None:
    assert host in SERVICES, f"job {job} scrapes {host}, which is not a compose service"
    service = SERVICES[host]
    assert port in listen_ports(service), f"{host} does not listen on 0.0.0.0:{port}"
    if host in UPSTREAM_SERVICES:
        # An upstream image serves its own metrics (Alertmanager: tests/test_prometheus.py
        # scrapes a real one); only the Prometheus ecosystem's do, on /metrics.
        assert service["image"].startswith("prom/") and path == "/metrics", (host, path)
        return
    # The route lives in the package the service's command runs.
    module = next(arg for arg in service["command"] if re.fullmatch(r"[a-z]+\.[\w.:()]+", arg))
    package = ROOT / module.split(".")[0]
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


# --- alerts: Prometheus sends them to Alertmanager, whose config is rendered at start -------

ALERTMANAGER_PORT_IN_DEBUG = "127.0.0.1:${ALERTMANAGER_PORT:-9093}:9093"
DEBUG = yaml.safe_load((ROOT / "docker-compose.debug.yml").read_text())["services"]


def test_prometheus_sends_alerts_to_the_alertmanager_service_listening_there() -> None:
    targets = [target for manager in PROMETHEUS_CONFIG["alerting"]["alertmanagers"]
               for group in manager["static_configs"] for target in group["targets"]]
    assert targets == ["alertmanager:9093"]
    host, _, port = targets[0].rpartition(":")
    assert host in SERVICES and int(port) in listen_ports(SERVICES[host])


def flag(service: dict, name: str) -> str:
    """The value of --name=VALUE in the service's command."""
    [value] = [arg.split("=", 1)[1] for arg in service["command"]
               if arg.startswith(f"--{name}=")]
    return value


def test_alertmanager_reads_the_config_its_one_off_step_renders() -> None:
    renderer, alertmanager = SERVICES["alertmanager-config"], SERVICES["alertmanager"]
    assert renderer["command"][:3] == ["python", "-m", "monitoring.alertmanager.render"]
    out = renderer["command"][renderer["command"].index("--out") + 1]
    [(volume, written_in)] = volume_mounts(renderer)
    assert out.startswith(written_in + "/")
    # Alertmanager mounts that volume read-only and reads that very file from it, once the
    # renderer has succeeded (a refused value keeps Alertmanager from starting).
    [read_in] = [target for source, target in volume_mounts(alertmanager) if source == volume]
    assert f"{volume}:{read_in}:ro" in alertmanager["volumes"]
    assert flag(alertmanager, "config.file") == read_in + out[len(written_in):]
    assert alertmanager["depends_on"] == {
        "alertmanager-config": {"condition": "service_completed_successfully"}}
    # Silences and the notification log outlive the container.
    assert f"alertmanager-data:{flag(alertmanager, 'storage.path')}" in alertmanager["volumes"]
    assert flag(alertmanager, "cluster.listen-address") == ""  # one instance, no gossip
    assert "/-/ready" in " ".join(alertmanager["healthcheck"]["test"])


def test_every_receiver_variable_reaches_the_renderer_and_is_documented() -> None:
    environment = SERVICES["alertmanager-config"]["environment"]
    assert set(environment) == set(render.VARIABLES)
    for name in render.VARIABLES:  # optional: the stack starts without any receiver
        assert re.fullmatch(rf"\$\{{{name}:-[^}}]*\}}", environment[name]), environment[name]
    for env_file in (".env.local", ".env.cloud"):
        documented = read_env_file(ROOT / env_file)
        missing = sorted(set(render.VARIABLES) - set(documented))
        assert not missing, f"{env_file} lacks {missing}"


def test_alertmanager_is_published_only_on_loopback_and_only_for_a_developer() -> None:
    assert "ports" not in SERVICES["alertmanager"]
    assert DEBUG["alertmanager"]["ports"] == [ALERTMANAGER_PORT_IN_DEBUG]


def test_the_debug_override_publishes_compose_services_on_loopback_only() -> None:
    for name, service in DEBUG.items():
        assert name in SERVICES, name
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)


# --- closed by default: what `make up` publishes, as compose itself resolves it -------------

def make_up_compose_files(*variables: str) -> list[str]:
    """The -f files of the `docker compose ... up` line `make up` runs (`make -n`: nothing
    is run), with `variables` (e.g. env=cloud, debug=1) on make's command line."""
    done = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "up",
                           *variables], capture_output=True, text=True, check=True)
    [line] = [line for line in done.stdout.splitlines() if line.startswith("docker compose ")
              and " up " in line]
    words = line.split()
    return [words[i + 1] for i, word in enumerate(words) if word == "-f"]


def published_by_compose(files: list[str], tmp_path: Path, template: str = ".env.local",
                         ) -> dict[str, list[dict]]:
    """Service -> its published ports, from `docker compose config` (the CLI alone, no
    engine) of `files` with an env file generated from `template` as `make up` does."""
    from operations.generate_env import fill

    if subprocess.run(["docker", "compose", "version"], capture_output=True,
                      check=False).returncode != 0:
        pytest.fail("no compose v2 plugin (`docker compose version` failed): "
                    "`make test-prereqs` installs it")
    env_file = tmp_path / "stack.env"
    env_file.write_text(fill((ROOT / template).read_text(), {}))
    done = subprocess.run(["docker", "compose", "--project-directory", str(ROOT),
                           "--env-file", str(env_file), *(a for f in files for a in ("-f", f)),
                           "config", "--format", "json"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    services = json.loads(done.stdout)["services"]
    return {name: service["ports"] for name, service in services.items()
            if service.get("ports")}


@pytest.mark.parametrize(("env", "address"), [("local", ("127.0.0.1", "8443")),
                                              ("cloud", ("0.0.0.0", "443"))])
def test_the_default_make_up_publishes_the_front_door_only(
    env: str, address: tuple[str, str], tmp_path: Path,
) -> None:
    files = make_up_compose_files(f"env={env}")
    assert files == ["docker-compose.yml"]
    published = published_by_compose(files, tmp_path, f".env.{env}")
    assert list(published) == ["gateway"], published
    [port] = published["gateway"]
    assert (port["host_ip"], port["published"], port["target"]) == (*address, 8443)


def test_debug_ports_are_asked_for_by_name_and_bound_to_loopback(tmp_path: Path) -> None:
    files = make_up_compose_files("debug=1")
    assert files == ["docker-compose.yml", "docker-compose.debug.yml"]
    published = published_by_compose(files, tmp_path)
    assert set(published) == {"gateway", *DEBUG}
    assert all(port["host_ip"] == "127.0.0.1" for ports in published.values() for port in ports)
    refused = subprocess.run(["make", "-n", "-C", str(ROOT), "up", "debug=maybe"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "debug must be 1" in refused.stderr
    help_text = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True,
                               text=True, check=True, timeout=30).stdout
    assert "debug=1" in help_text


def test_every_named_volume_is_declared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for source, _ in volume_mounts(service):
            if not source.startswith(("./", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"


# --- the offline override (tests/stack/): stand-ins for what this machine cannot pull -------

OFFLINE = yaml.safe_load((ROOT / "tests/stack/compose.offline.yml").read_text())["services"]
STANDIN_BUILD = (ROOT / "tests/stack/standins/build.sh").read_text()


def test_offline_override_swaps_every_upstream_image_but_grafana_for_a_built_stand_in() -> None:
    assert set(OFFLINE) == set(SERVICES)
    for name in UPSTREAM_SERVICES:
        if name == "grafana":  # no stand-in exists: left out of the offline stack
            assert OFFLINE[name] == {"profiles": ["grafana"]}
            continue
        image = OFFLINE[name]["image"]
        assert image.startswith("onebox-standin/"), (name, image)
        assert f"\nbuild {image} " in STANDIN_BUILD, f"build.sh does not build {image}"


def test_offline_override_builds_the_onebox_image_on_the_python_stand_in() -> None:
    for name in ONEBOX_SERVICES:
        assert OFFLINE[name]["build"]["args"] == {"PYTHON_IMAGE": "onebox-standin/python:3.11"}
        assert OFFLINE[name]["image"] == "onebox-python:standin"
    assert "\nbuild onebox-standin/python:3.11 " in STANDIN_BUILD


@pytest.mark.parametrize("target", ["demo", "test", "test-prereqs", "up", "down", "logs", "ps",
                                    "up-offline", "down-offline", "bench-stack"])
def test_the_readme_names_each_front_door_command_and_the_makefile_has_it(target: str) -> None:
    assert f"make {target}" in (ROOT / "README.md").read_text()
    assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M)


def test_ci_runs_the_readme_commands_from_a_fresh_machine() -> None:
    ci = (ROOT / ".ci/run").read_text()
    assert "make test-prereqs" in ci and re.search(r"^\s*make test\b(?!-)", ci, re.M)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_memory_limit_and_rotated_logs(name: str) -> None:
    """A leak or a runaway flow stops at its own limit instead of taking the host's memory,
    and no container's output can fill the disk."""
    service = SERVICES[name]
    limit = service["deploy"]["resources"]["limits"]["memory"]
    assert re.fullmatch(r"\$\{[A-Z_]+_MEMORY:-\d+[mg]\}", limit), limit
    logging = service["logging"]
    assert logging["driver"] == "json-file"
    assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 1
