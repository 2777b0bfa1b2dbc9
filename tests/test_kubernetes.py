"""Kubernetes, on paper (kubernetes/): the values files against their charts' schemas, the
manifests against the compose stack they translate.  No cluster, no helm: YAML and JSON
Schema only."""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "kubernetes"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ONEBOX_IMAGE = re.fullmatch(r"\$\{ONEBOX_IMAGE:-(.+)\}", COMPOSE["x-onebox-image"]["image"])[1]
IMAGE_UID = int(re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text())[1])

# Charts that ship a values.schema.json (copied, with their defaults, into kubernetes/schemas/).
SCHEMA_CHARTS = ("prefect-server", "prefect-worker", "mlflow", "cloudnative-pg")
VALUES_CHARTS = (*SCHEMA_CHARTS, "kube-prometheus-stack")
MANIFEST_KINDS = {
    "postgres.yaml": [("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "Database"),
                      ("postgresql.cnpg.io/v1", "Database")],
    "onebox-env.yaml": [("v1", "ConfigMap")],
    "storage.yaml": [("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolumeClaim")],
    "predictor.yaml": [("apps/v1", "Deployment"), ("v1", "Service"),
                       ("autoscaling/v2", "HorizontalPodAutoscaler"),
                       ("policy/v1", "PodDisruptionBudget")],
    "drift-exporter.yaml": [("apps/v1", "Deployment"), ("v1", "Service")],
    "deploy-job.yaml": [("batch/v1", "Job")],
    "bootstrap-job.yaml": [("batch/v1", "Job")],
    "migrate-job.yaml": [("batch/v1", "Job")],
}
# Which compose service each workload of the manifests runs.
WORKLOADS = {("Deployment", "predictor"): "predictor",
             ("Deployment", "drift-exporter"): "drift-exporter",
             ("Job", "onebox-deploy"): "deploy",
             ("Job", "onebox-bootstrap"): "bootstrap"}


def load_values(chart: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / "values" / f"{chart}.yaml").read_text())


def load_manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / "manifests" / name).read_text()) if doc]


ALL_DOCS = [doc for name in MANIFEST_KINDS for doc in load_manifests(name)]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in ALL_DOCS
               if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def only_container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(doc)["containers"]
    assert len(containers) == 1, doc["metadata"]["name"]
    return containers[0]


def compose_default(value: Any) -> str:
    """A compose value with every ${VAR:-default} / ${VAR:?message} read as its default."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::-([^}]*)|:\?[^}]*)\}", lambda m: m[1] or "", str(value))


def helm_coalesce(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The values Helm validates: the chart's defaults with the user's values merged in
    (maps merged key by key, anything else replaced, null deleting the key)."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def schema_errors(chart: str, values: dict[str, Any]) -> list[str]:
    schema = json.loads((K8S / "schemas" / f"{chart}.values.schema.json").read_text())
    defaults = yaml.safe_load((K8S / "schemas" / f"{chart}.values.yaml").read_text())
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator.check_schema(schema)
    return [f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator(schema).iter_errors(helm_coalesce(defaults, values))]


def memory_bytes(quantity: str) -> int:
    """A Kubernetes (Mi, Gi) or Docker (m, g) memory size in bytes: both are binary."""
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi|m|g)", quantity).groups()
    return int(number) * 1024 ** (2 if unit in ("Mi", "m") else 3)


def compose_memory_limit(service: str) -> int:
    return memory_bytes(compose_default(
        SERVICES[service]["deploy"]["resources"]["limits"]["memory"]))


def compose_health(service: str) -> tuple[int, str]:
    """The port and path a compose healthcheck asks (http://localhost:PORT/PATH)."""
    test = " ".join(SERVICES[service]["healthcheck"]["test"])
    port, path = re.search(r"https?://localhost:(\d+)(/[^'\s]*)", test).groups()
    return int(port), path


def env_names(container: dict[str, Any]) -> set[str]:
    """Every variable a container gets: its env, and the keys of the ConfigMaps it loads."""
    names = {item["name"] for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(find("ConfigMap", source["configMapRef"]["name"])["data"])
    return names


def env_value(container: dict[str, Any], name: str) -> Any:
    for item in container.get("env", []):
        if item["name"] == name:
            return item.get("value", item.get("valueFrom"))
    for source in container.get("envFrom", []):
        data = find("ConfigMap", source["configMapRef"]["name"])["data"]
        if name in data:
            return data[name]
    raise KeyError(name)


def http_probe_port(container: dict[str, Any], probe: str) -> int:
    port = container[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


# --- values files against their charts' schemas ---------------------------------------------


def test_each_chart_has_a_values_file_and_each_schema_its_source() -> None:
    assert sorted(p.stem for p in (K8S / "values").glob("*.yaml")) == sorted(VALUES_CHARTS)
    schemas = sorted(p.name for p in (K8S / "schemas").iterdir())
    assert schemas == sorted(["SOURCES.md"]
                             + [f"{c}.values.schema.json" for c in SCHEMA_CHARTS]
                             + [f"{c}.values.yaml" for c in SCHEMA_CHARTS])


def test_vendored_chart_files_are_the_ones_sources_md_names() -> None:
    rows = re.findall(r"^\| `([^`]+)` \| ([\w-]+/[\w-]+) \| `([^`]+)` \| `([^`]+)` \| "
                      r"`([0-9a-f]{40})` \| `([0-9a-f]{64})` \|$",
                      (K8S / "schemas" / "SOURCES.md").read_text(), flags=re.MULTILINE)
    recorded = {row[0]: row[5] for row in rows}
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (K8S / "schemas").iterdir() if p.name != "SOURCES.md"}
    assert recorded == on_disk


@pytest.mark.parametrize("chart", SCHEMA_CHARTS)
def test_values_validate_against_the_chart_schema(chart: str) -> None:
    assert schema_errors(chart, load_values(chart)) == []


@pytest.mark.parametrize("chart, path", [("prefect-server", ("server", "replicaCount")),
                                         ("prefect-worker", ("worker", "replicaCount")),
                                         ("mlflow", ("replicaCount",)),
                                         ("cloudnative-pg", ("replicaCount",))])
def test_schema_check_rejects_a_wrong_value(chart: str, path: tuple[str, ...]) -> None:
    values = load_values(chart)
    node = values
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = "two"
    assert any(".".join(path) in error for error in schema_errors(chart, values))


def test_closed_schemas_reject_a_misspelt_key() -> None:
    # mlflow's schema closes its root, prefect-worker's its `worker` map: a typo is refused.
    assert schema_errors("mlflow", {**load_values("mlflow"), "serverAllowedHost": ["x"]})
    worker = load_values("prefect-worker")
    worker["worker"]["extraEnvVar"] = []
    assert schema_errors("prefect-worker", worker)


# --- manifests ----------------------------------------------------------------------------


def test_manifests_parse_with_the_expected_kinds() -> None:
    assert sorted(p.name for p in (K8S / "manifests").glob("*.yaml")) == sorted(MANIFEST_KINDS)
    for name, kinds in MANIFEST_KINDS.items():
        docs = load_manifests(name)
        assert [(doc["apiVersion"], doc["kind"]) for doc in docs] == kinds, name
        for doc in docs:
            assert doc["metadata"]["name"], name
            assert "namespace" not in doc["metadata"], "the namespace comes from kubectl -n"


def test_hpa_scales_the_predictor_deployment_on_cpu() -> None:
    deployment = find("Deployment", "predictor")
    hpa = find("HorizontalPodAutoscaler", "predictor")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1", "Deployment", deployment["metadata"]["name"])
    assert [(m["type"], m["resource"]["name"], m["resource"]["target"]["type"])
            for m in hpa["spec"]["metrics"]] == [("Resource", "cpu", "Utilization")]
    assert 0 < hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] <= 100
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # The HPA owns the replica count; utilisation is measured against the CPU request.
    assert "replicas" not in deployment["spec"]
    assert only_container(deployment)["resources"]["requests"]["cpu"]


def test_pdb_selects_the_predictor_pods_and_leaves_room_to_drain() -> None:
    deployment = find("Deployment", "predictor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = find("PodDisruptionBudget", "predictor")
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    exporter_labels = find("Deployment", "drift-exporter")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= exporter_labels.items()
    min_replicas = find("HorizontalPodAutoscaler", "predictor")["spec"]["minReplicas"]
    assert pdb["spec"]["minAvailable"] < min_replicas


def test_services_select_their_pods_on_a_named_port() -> None:
    for name in ("predictor", "drift-exporter"):
        deployment, service = find("Deployment", name), find("Service", name)
        assert (deployment["spec"]["selector"]["matchLabels"].items()
                <= deployment["spec"]["template"]["metadata"]["labels"].items())
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        ports = {p["name"]: p["containerPort"] for p in only_container(deployment)["ports"]}
        (service_port,) = service["spec"]["ports"]
        assert service_port["targetPort"] in ports
        # compose's port, so the addresses and job names stay what they were.
        assert service_port["port"] == ports[service_port["targetPort"]] == compose_health(name)[0]


def served_get_routes() -> set[str]:
    tree = ast.parse((ROOT / "server" / "views.py").read_text())
    return {decorator.args[0].value
            for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
            for decorator in node.decorator_list
            if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "get"}


def test_predictor_probes_ask_the_route_the_compose_healthcheck_asks() -> None:
    routes = served_get_routes()
    assert "/health" in routes and "/predict" not in routes  # the parse found the views
    container = only_container(find("Deployment", "predictor"))
    port, path = compose_health("predictor")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == path, probe
        assert path in routes
        assert http_probe_port(container, probe) == port
    assert env_value(container, "PREDICTOR_BIND").endswith(f":{port}")


def test_a_terminating_predictor_drains_then_stops_within_its_grace_period() -> None:
    """Serving on while the endpoints drop the pod, then gunicorn's graceful stop: the
    pod's grace period covers both, or the kubelet kills it mid-request."""
    deployment = find("Deployment", "predictor")
    drain = int(env_value(only_container(deployment), "PREDICTOR_DRAIN_SECONDS"))
    graceful = int(re.search(r"^graceful_timeout = (\d+)$",
                             (ROOT / "server/gunicorn.conf.py").read_text(), re.M)[1])
    assert drain > 0
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= \
        drain + graceful


def test_exporter_readiness_is_the_compose_healthcheck() -> None:
    container = only_container(find("Deployment", "drift-exporter"))
    port, path = compose_health("drift-exporter")
    assert container["readinessProbe"]["httpGet"]["path"] == path
    assert http_probe_port(container, "readinessProbe") == port
    exporter = (ROOT / "monitoring" / "exporter.py").read_text()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert f'path == "{container[probe]["httpGet"]["path"]}"' in exporter, probe
    assert f"0.0.0.0:{port}" in container["command"]


def test_worker_values_keep_the_compose_command_and_healthcheck() -> None:
    worker = load_values("prefect-worker")["worker"]
    command = [compose_default(word) for word in SERVICES["prefect-worker"]["command"]]
    assert worker["command"] + worker["args"] == command
    assert worker["config"]["workPool"] == command[command.index("--pool") + 1]
    assert worker["config"]["type"] == command[command.index("--type") + 1]
    # The chart's liveness probe asks :8080/health, what the compose healthcheck asks.
    assert compose_health("prefect-worker") == (8080, "/health")
    assert worker["livenessProbe"]["enabled"] and "--with-healthcheck" in command


def test_workloads_run_the_compose_command_and_image() -> None:
    for (kind, name), service in WORKLOADS.items():
        container = only_container(find(kind, name))
        assert container["image"] == ONEBOX_IMAGE, name
        assert container["command"] == [compose_default(w) for w in SERVICES[service]["command"]]
    image = load_values("prefect-worker")["worker"]["image"]
    assert f"{image['repository']}:{image['prefectTag']}" == ONEBOX_IMAGE
    assert {SERVICES[s]["image"] for s in ("predictor", "drift-exporter", "prefect-worker",
                                           "deploy", "bootstrap")} == {
        COMPOSE["x-onebox-image"]["image"]}


def test_chart_images_are_pinned_and_the_prefect_server_matches_its_clients() -> None:
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                if "==" in line)
    server = load_values("prefect-server")["global"]["prefect"]["image"]
    assert server["repository"] == "prefecthq/prefect"
    assert server["prefectTag"] == f"{pins['prefect']}-python3.11"
    mlflow = load_values("mlflow")["image"]
    assert mlflow["repository"] == "burakince/mlflow"
    assert re.fullmatch(r"\d+\.\d+\.\d+", mlflow["tag"])
    assert mlflow["tag"].split(".")[0] == pins["mlflow"].split(".")[0]
    cluster = find("Cluster", "onebox-pg")
    assert re.search(r":16\.\d+-.*@sha256:[0-9a-f]{64}$", cluster["spec"]["imageName"])
    assert SERVICES["postgres"]["image"].startswith("postgres:16.")


def test_every_compose_variable_reaches_its_workload() -> None:
    config = find("ConfigMap", "onebox-env")["data"]
    assert set(config) == set(COMPOSE["x-python-env"]) - {"MONITORING_DB_PASSWORD"}
    for (kind, name), service in WORKLOADS.items():
        missing = set(SERVICES[service]["environment"]) - env_names(only_container(find(kind,
                                                                                          name)))
        assert not missing, (name, missing)
    worker = load_values("prefect-worker")["worker"]
    given = ({e["name"] for e in worker["extraEnvVars"]} | set(config)
             | {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING"})  # the chart sets these two
    assert worker["extraEnvVarsCMs"] == ["onebox-env"]
    assert set(SERVICES["prefect-worker"]["environment"]) <= given


def read_env_template(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def test_settings_are_the_cloud_templates_but_for_the_cluster_addresses() -> None:
    cloud = read_env_template(ROOT / ".env.cloud")
    config = find("ConfigMap", "onebox-env")["data"]
    addresses = {"MLFLOW_TRACKING_URI", "MONITORING_DB_HOST"}
    for name, value in config.items():
        if name not in addresses:
            expected = cloud.get(name, compose_default(COMPOSE["x-python-env"][name]))
            assert value == expected, name
    for (kind, name), service in WORKLOADS.items():
        container = only_container(find(kind, name))
        for variable, value in SERVICES[service]["environment"].items():
            if variable in {item["name"] for item in container.get("env", [])}:
                given = env_value(container, variable)
                if isinstance(given, str):
                    assert given == cloud.get(variable, compose_default(value)), variable


def test_addresses_point_at_the_services_the_charts_and_manifests_create() -> None:
    config = find("ConfigMap", "onebox-env")["data"]
    mlflow = load_values("mlflow")
    assert config["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow['service']['port']}"
    assert "mlflow:*" in mlflow["serverAllowedHosts"]
    primary = f"{find('Cluster', 'onebox-pg')['metadata']['name']}-rw"
    assert config["MONITORING_DB_HOST"] == primary
    assert load_values("prefect-server")["externalDatabase"]["host"] == primary
    assert mlflow["backendStore"]["postgres"]["host"] == primary
    server = load_values("prefect-server")
    prefect_api = f"http://prefect-server:{server['service']['port']}/api"
    assert prefect_api == SERVICES["bootstrap"]["environment"]["PREFECT_API_URL"]
    worker_api = load_values("prefect-worker")["worker"]["selfHostedServerApiConfig"]
    assert worker_api["apiUrl"] == prefect_api
    for name in ("onebox-deploy", "onebox-bootstrap"):
        assert env_value(only_container(find("Job", name)), "PREFECT_API_URL") == prefect_api
    auth = server["server"]["basicAuth"]
    assert auth["enabled"] and worker_api["basicAuth"]["enabled"]
    assert auth["existingSecret"] == worker_api["basicAuth"]["existingSecret"]
    for name in ("onebox-deploy", "onebox-bootstrap"):
        ref = env_value(only_container(find("Job", name)), "PREFECT_API_AUTH_STRING")
        assert ref["secretKeyRef"] == {"name": auth["existingSecret"], "key": "auth-string"}


def test_cluster_holds_the_databases_and_roles_compose_setup_creates() -> None:
    setup = SERVICES["setup"]["environment"]
    wanted = {compose_default(setup[f"{s}_DB_NAME"]): compose_default(setup[f"{s}_DB_USER"])
              for s in ("MLFLOW", "PREFECT", "MONITORING")}
    cluster = find("Cluster", "onebox-pg")["spec"]
    initdb = cluster["bootstrap"]["initdb"]
    owners = {initdb["database"]: initdb["owner"]}
    for doc in ALL_DOCS:
        if doc["kind"] == "Database":
            assert doc["spec"]["cluster"]["name"] == "onebox-pg"
            owners[doc["spec"]["name"]] = doc["spec"]["owner"]
    assert owners == wanted
    secrets = {initdb["owner"]: initdb["secret"]["name"]}
    secrets |= {role["name"]: role["passwordSecret"]["name"]
                for role in cluster["managed"]["roles"] if role.get("login")}
    assert set(secrets) == set(wanted.values())
    assert cluster["enableSuperuserAccess"] is False
    # Each service signs in with its own role's Secret.
    mlflow_db = load_values("mlflow")["backendStore"]
    assert mlflow_db["postgres"]["database"] == "mlflow"
    assert mlflow_db["existingDatabaseSecret"]["name"] == secrets["mlflow"]
    prefect_db = load_values("prefect-server")["externalDatabase"]
    assert (prefect_db["name"], prefect_db["existingSecret"]) == ("prefect", secrets["prefect"])
    monitoring = {"name": secrets["monitoring"], "key": "password"}
    for kind, name in WORKLOADS:
        ref = env_value(only_container(find(kind, name)), "MONITORING_DB_PASSWORD")
        assert ref["secretKeyRef"] == monitoring, name
    (worker_ref,) = [e for e in load_values("prefect-worker")["worker"]["extraEnvVars"]
                     if e["name"] == "MONITORING_DB_PASSWORD"]
    assert worker_ref["valueFrom"]["secretKeyRef"] == monitoring


def test_pods_run_as_the_image_user_with_requests_and_compose_memory_limits() -> None:
    for (kind, name), service in WORKLOADS.items():
        spec = pod_spec(find(kind, name))
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == IMAGE_UID
        assert spec["automountServiceAccountToken"] is False
        container = only_container(find(kind, name))
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
        assert memory_bytes(resources["limits"]["memory"]) == compose_memory_limit(service), name
    worker = load_values("prefect-worker")["worker"]
    assert worker["podSecurityContext"]["runAsUser"] == IMAGE_UID
    assert worker["containerSecurityContext"]["runAsUser"] == IMAGE_UID
    assert worker["containerSecurityContext"]["readOnlyRootFilesystem"] is True
    assert (memory_bytes(worker["resources"]["limits"]["memory"])
            == compose_memory_limit("prefect-worker"))
    for chart, limits, service in (
            ("prefect-server", load_values("prefect-server")["server"]["resources"]["limits"],
             "prefect-server"),
            ("mlflow", load_values("mlflow")["resources"]["limits"], "mlflow")):
        assert memory_bytes(limits["memory"]) == compose_memory_limit(service), chart


def test_every_path_compose_mounts_is_writable_and_every_volume_exists() -> None:
    claims = {doc["metadata"]["name"] for doc in ALL_DOCS if doc["kind"] == "PersistentVolumeClaim"}
    pods = {name: (pod_spec(find(kind, name))["volumes"],
                   only_container(find(kind, name))["volumeMounts"], service)
            for (kind, name), service in WORKLOADS.items()}
    worker = load_values("prefect-worker")["worker"]
    pods["prefect-worker"] = (worker["extraVolumes"], worker["extraVolumeMounts"],
                              "prefect-worker")
    for name, (volumes, mounts, service) in pods.items():
        volume_names = {v["name"] for v in volumes}
        assert {m["name"] for m in mounts} <= volume_names, name
        for volume in volumes:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        mounted = {m["mountPath"] for m in mounts}
        wanted = {entry.split(":")[1] for entry in SERVICES[service].get("volumes", [])}
        assert wanted <= mounted, (name, wanted - mounted)
    # The bootstrap Job shares the worker's ReadWriteOnce claims: it runs on its node.
    term = pod_spec(find("Job", "onebox-bootstrap"))["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prefect-worker",
                                                    "app.kubernetes.io/component": "worker"}
    assert "nameOverride" not in load_values("prefect-worker")


# --- monitoring: the same jobs, rules, datasource and alert routing ------------------------


def test_service_monitors_keep_prometheus_job_names() -> None:
    scrape = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    interval = scrape["global"]["scrape_interval"]
    values = load_values("kube-prometheus-stack")
    services = [doc for doc in ALL_DOCS if doc["kind"] == "Service"]
    seen = set()
    for monitor in values["prometheus"]["additionalServiceMonitors"]:
        (service,) = [s for s in services if monitor["selector"]["matchLabels"].items()
                      <= s["metadata"]["labels"].items()]
        job = jobs[service["metadata"]["name"]]  # ServiceMonitor job label = Service name
        (endpoint,) = monitor["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == job["metrics_path"]
        assert endpoint["interval"] == job.get("scrape_interval", interval)
        seen.add(job["job_name"])
    # Alertmanager is scraped by the chart's own ServiceMonitor (path /metrics), its job
    # label renamed to compose's by a relabeling.
    alertmanager = values["alertmanager"]["serviceMonitor"]
    assert alertmanager["selfMonitor"] is True
    (rename,) = [r for r in alertmanager["relabelings"] if r["targetLabel"] == "job"]
    assert rename["regex"] == values["alertmanager"]["alertmanagerSpec"].get("portName",
                                                                              "http-web")
    if rename["replacement"] in jobs:
        assert jobs[rename["replacement"]]["metrics_path"] == "/metrics"
        seen.add(rename["replacement"])
    assert seen == set(jobs)


def test_readme_rules_command_carries_alerts_yml_unchanged(tmp_path: Path) -> None:
    readme = (K8S / "README.md").read_text()
    (command,) = [line for line in readme.splitlines()
                  if line.startswith("{ printf 'additionalPrometheusRulesMap:")]
    out = tmp_path / "onebox-rules.yaml"
    subprocess.run(["bash", "-c", command.replace("onebox-rules.yaml", str(out))],
                   cwd=ROOT, check=True)
    rules = yaml.safe_load(out.read_text())["additionalPrometheusRulesMap"]["onebox"]
    alerts = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "alerts.yml").read_text())
    assert rules == alerts
    assert sum(len(group["rules"]) for group in alerts["groups"]) >= 10
    # And the values file points at it (kube-prometheus-stack puts it in a PrometheusRule).
    assert "-f onebox-rules.yaml" in readme


def test_grafana_datasource_uid_is_the_one_the_dashboards_name() -> None:
    provisioned = yaml.safe_load((ROOT / "monitoring" / "grafana" / "provisioning"
                                  / "datasources" / "prometheus.yml").read_text())
    (datasource,) = provisioned["datasources"]
    grafana = load_values("kube-prometheus-stack")["grafana"]
    assert grafana["sidecar"]["datasources"]["uid"] == datasource["uid"]
    for path in (ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json"):
        uids = set(re.findall(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', path.read_text()))
        assert uids == {datasource["uid"]}, path.name
    assert grafana["admin"]["existingSecret"]


def test_alertmanager_reads_the_rendered_config_secret() -> None:
    spec = load_values("kube-prometheus-stack")["alertmanager"]["alertmanagerSpec"]
    assert spec["useExistingSecret"] is True
    readme = (K8S / "README.md").read_text()
    assert f"create secret generic {spec['configSecret']}" in readme
    assert "monitoring.alertmanager.render --out -" in readme


def test_a_job_migrates_the_prediction_log_as_compose_setup_does() -> None:
    """No service migrates the tables itself (they stop saying to run the migrations): on
    Kubernetes that is a Job, with the monitoring database's settings and password."""
    job = find("Job", "onebox-migrate")
    container = only_container(job)
    assert container["image"] == ONEBOX_IMAGE
    assert container["command"] == ["python", "-m", "core.migrations", "upgrade"]
    assert container["envFrom"] == [{"configMapRef": {"name": "onebox-env"}}]
    config = find("ConfigMap", "onebox-env")["data"]
    assert {"MONITORING_DB_HOST", "MONITORING_DB_NAME", "MONITORING_DB_USER"} <= set(config)
    [password] = [e for e in container["env"] if e["name"] == "MONITORING_DB_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "onebox-db-monitoring",
                                                     "key": "password"}
    assert pod_spec(job)["securityContext"]["runAsUser"] == IMAGE_UID
    assert (memory_bytes(container["resources"]["limits"]["memory"])
            == compose_memory_limit("setup"))
    readme = (K8S / "README.md").read_text()
    assert readme.index("migrate-job.yaml") < readme.index("predictor.yaml \\")
