"""nginx (Debian's package, a real process) serving the reports folder with the project's
config: the index and a report are fetched over HTTP, and nothing can be written."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from core import registry
from core.registry import PREDICTION_COLUMN
from core.schema import Schema, model_frame
from orchestration import processes
from reporting.report import write_report
from simulation.generator import SCENARIOS, generate

pytestmark = pytest.mark.slow
SITE_CONFIG = Path(__file__).resolve().parent.parent / "reporting" / "nginx.conf"
# What the compose file mounts: the config as conf.d/default.conf, reports under /srv/reports.
COMPOSE_PORT = "listen 8888;"
COMPOSE_ROOT = "root /srv/reports;"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail("nginx is not installed: apt-get install nginx (.ci/run does)")
    return found


@pytest.fixture
def reports(tmp_path: Path, champion: registry.LoadedModel, schema: Schema) -> Path:
    folder = tmp_path / "srv" / "reports"
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    for hour, (seed, scenario) in enumerate(((41, "none"), (42, "older_customers"))):
        frame = generate(800, seed, SCENARIOS[scenario], schema)
        frame[PREDICTION_COLUMN] = champion.predict_proba(model_frame(schema, frame))
        write_report(frame, champion, folder, title=f"window {scenario}",
                     now=t0 + timedelta(hours=hour))
    return folder


@pytest.fixture
def nginx(tmp_path: Path, reports: Path) -> Iterator[str]:
    """The project's server block, on a free port and the test's reports folder,
    inside a minimal main config (as the nginx image's own nginx.conf includes it)."""
    site = SITE_CONFIG.read_text()
    assert COMPOSE_PORT in site and COMPOSE_ROOT in site, "the site config changed shape"
    port = processes.free_port()
    site = site.replace(COMPOSE_PORT, f"listen 127.0.0.1:{port};").replace(
        COMPOSE_ROOT, f"root {reports};")
    prefix = tmp_path / "nginx"
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
    base = f"http://127.0.0.1:{port}"
    try:
        processes.wait_until_healthy(f"{base}/healthz", proc, timeout=20)
        yield base
    finally:
        processes.stop(proc)


def test_nginx_serves_the_index_newest_first_and_each_report(nginx: str, reports: Path) -> None:
    index = requests.get(f"{nginx}/", timeout=5)
    assert index.status_code == 200
    assert index.headers["Content-Type"].startswith("text/html")
    assert index.headers.get("Cache-Control") == "no-cache"
    reports_listed = sorted(p.name for p in reports.glob("drift-*.html"))
    assert len(reports_listed) == 2
    older, newer = reports_listed
    assert index.text.index(newer) < index.text.index(older)
    assert "customer_age" in index.text  # the drifted window's headline

    page = requests.get(f"{nginx}/{newer}", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.content == (reports / newer).read_bytes()


def test_nginx_is_read_only_and_serves_nothing_outside_the_folder(nginx: str,
                                                                  reports: Path) -> None:
    name = next(reports.glob("drift-*.html")).name
    for method in ("post", "put", "delete"):
        response = requests.request(method, f"{nginx}/{name}", data=b"x", timeout=5)
        assert response.status_code in (403, 405), (method, response.status_code)
    assert (reports / name).stat().st_size > 1000  # untouched
    assert requests.get(f"{nginx}/no-such-report.html", timeout=5).status_code == 404
    outside = requests.get(f"{nginx}/../nginx/nginx.conf", timeout=5)
    assert outside.status_code in (400, 404)
    assert "worker_processes" not in outside.text
