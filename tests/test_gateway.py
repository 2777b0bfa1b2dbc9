"""The front door (gateway/nginx.conf) in Debian's nginx, a real process, with the TLS
certificate and password file the config check makes, in front of a real predictor: the
reports read-only behind the people's login, the predictor's API behind its own keys,
nothing else routed.  (The compose stack test walks the same door with every service.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from core import registry
from core.api_keys import new_key
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from operations import processes
from operations.check_config import prepare_gateway
from reporting.report import write_report
from simulation.generator import SCENARIOS, generate
from tests import browser
from tests.factories import valid_record
from tests.test_predictor import start

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SITE_CONFIG = ROOT / "gateway" / "nginx.conf"
# What the compose file mounts where (the test puts each in a temp folder instead).
IN_COMPOSE = {
    "listen 8443 ssl;": "listen 127.0.0.1:{port} ssl;",
    "/etc/onebox/gateway/": "{gateway}/",
    "root /srv;": "root {srv};",
    "root /etc/onebox/gateway-site;": f"root {ROOT / 'gateway'};",
    "set $predictor predictor:9696;": "set $predictor 127.0.0.1:{predictor_port};",
}
ADMIN = ("admin", "a-long-random-people-password")
TOKEN, KEY = new_key("crm", ["predict"])


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail("nginx is not installed: apt-get install nginx (make test-prereqs does)")
    return found


@dataclass
class Door:
    url: str
    ca: Path
    reports: Path

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, verify=str(self.ca), timeout=10, **kwargs)

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return requests.request(method, self.url + path, verify=str(self.ca), timeout=10,
                                **kwargs)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, champion: registry.LoadedModel,
            schema: Schema) -> Path:
    folder = tmp_path_factory.mktemp("srv") / "reports"
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    for hour, (seed, scenario) in enumerate(((41, "none"), (42, "older_customers"))):
        frame = generate(800, seed, SCENARIOS[scenario], schema)
        frame[PREDICTION_COLUMN] = champion.predict_proba(model_frame(schema, frame))
        write_report(frame, champion, folder, title=f"window {scenario}",
                     now=t0 + timedelta(hours=hour))
    return folder


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory, trained_home: Path,
         reports: Path) -> Iterator[Door]:
    tmp = tmp_path_factory.mktemp("gateway")
    gateway = tmp / "material"
    prepare_gateway({"ADMIN_USER": ADMIN[0], "ADMIN_PASSWORD": ADMIN[1],
                     "PUBLIC_URL": "https://localhost:8443"}, gateway, tmp / "no-user-tls")
    predictor = start(trained_home, tmp, PREDICTOR_API_KEYS=KEY.spec())
    backend = next(predictor)
    port = processes.free_port()
    site = SITE_CONFIG.read_text()
    for compose_form, test_form in IN_COMPOSE.items():
        assert compose_form in site, f"the site config changed shape: {compose_form!r}"
        site = site.replace(compose_form, test_form.format(
            port=port, gateway=gateway, srv=reports.parent,
            predictor_port=backend.url.rsplit(":", 1)[1]))
    prefix = tmp / "nginx"
    prefix.mkdir()
    # As root, nginx's workers would drop to `nobody`, who cannot read pytest's 0700 temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    main_config = prefix / "nginx.conf"
    main_config.write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
""")
    binary = nginx_binary()
    check = subprocess.run([binary, "-t", "-c", str(main_config), "-p", str(prefix)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([binary, "-c", str(main_config), "-p", str(prefix)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    door = Door(f"https://localhost:{port}", gateway / "tls" / "cert.pem", reports)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if door.get("/healthz").status_code == 200:
                    break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        yield door
    finally:
        processes.stop(proc)
        next(predictor, None)


def test_the_reports_are_served_newest_first_behind_the_login(door: Door) -> None:
    assert door.get("/reports/").status_code == 401
    assert door.get("/reports/", auth=(ADMIN[0], "wrong")).status_code == 401
    index = door.get("/reports/", auth=ADMIN)
    assert index.status_code == 200
    assert index.headers["Content-Type"].startswith("text/html")
    assert index.headers.get("Cache-Control") == "no-cache"
    older, newer = sorted(p.name for p in door.reports.glob("drift-*.html"))
    assert index.text.index(newer) < index.text.index(older)
    assert "customer_age" in index.text  # the drifted window's headline
    page = door.get(f"/reports/{newer}", auth=ADMIN)
    assert page.status_code == 200 and page.content == (door.reports / newer).read_bytes()


def test_the_reports_are_read_only_and_nothing_outside_them_is_served(door: Door) -> None:
    name = next(door.reports.glob("drift-*.html")).name
    for method in ("POST", "PUT", "DELETE"):
        response = door.request(method, f"/reports/{name}", data=b"x", auth=ADMIN)
        assert response.status_code in (403, 405), (method, response.status_code)
    assert (door.reports / name).stat().st_size > 1000  # untouched
    assert door.get("/reports/no-such-report.html", auth=ADMIN).status_code == 404
    outside = door.get("/reports/../nginx/nginx.conf", auth=ADMIN)
    assert outside.status_code in (400, 404) and "worker_processes" not in outside.text


def test_the_predictor_is_behind_its_own_keys_and_only_health_is_public(door: Door) -> None:
    assert door.get("/health").json()["status"] == "ok"  # public, through TLS
    refused = door.request("POST", "/predict", json=valid_record())
    assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
    # The people's login is not an API key.
    assert door.request("POST", "/predict", json=valid_record(), auth=ADMIN).status_code == 401
    answered = door.request("POST", "/predict", json=valid_record(),
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert answered.status_code == 200 and answered.json()["model"]["version"]
    # The scraper's /metrics is not routed: 404 for everyone, a login or not.
    assert door.get("/metrics").status_code == 404
    assert door.get("/metrics", auth=ADMIN).status_code == 404


def test_the_front_page_links_every_tool_behind_the_login(door: Door) -> None:
    assert door.get("/").status_code == 401
    page = door.get("/", auth=ADMIN)
    assert page.status_code == 200
    for link in ("/reports/", "/grafana/", "/mlflow/", "/prefect/", "/prometheus/",
                 "/alertmanager/"):
        assert f'href="{link}"' in page.text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(door.url + "/health", timeout=10)  # the system's CAs do not know it


def test_the_try_page_works_through_the_front_door(door: Door) -> None:
    # The page is open like the API's paths; what it shows needs the API key it asks for.
    page = door.get("/try")
    assert page.status_code == 200 and "try the model" in page.text
    assert door.get("/model").status_code == 401
    with browser.open_browser(insecure=True) as chrome:
        chrome.get(door.url + "/try")
        browser.wait_for_text(chrome, "asks for an API key")
        chrome.find_element("id", "key").send_keys(TOKEN)
        chrome.find_element("id", "use-key").click()
        browser.wait_for_text(chrome, "churn-classifier v1")
        chrome.find_element("id", "predict").click()
        browser.wait_for_text(chrome, "chance of churn")
