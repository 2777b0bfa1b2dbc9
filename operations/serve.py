"""`make serve`: every page of the embedded stack on one port, in the foreground, until Ctrl-C.

After `make demo` (which returns and leaves nothing running), this serves what it made on
http://127.0.0.1:8080/ (`--host`, `--port`; `--business flights`, i.e. `make serve
DEMO=flights`, after that demo), at the same paths as the compose stack's front door
(gateway/nginx.conf), so the pages' one header (core/page_header.py) and every link work on
both:

    /                                         the landing page (gateway/index.html)
    /try                                      the predictor's try-it page (its `/`)
    /predict /feedback /health /model /openapi.json   the predictor's API (no key: the
                                              embedded settings ask none)
    /reports/                                 REPORTS_DIR from disk: the index, the drift
                                              and quality reports, the cards (models/)
    /mlflow/                                  MLflow's UI and API on the embedded store

Behind it, each in a session of its own (a Ctrl-C in the terminal reaches only this
process, which then stops them in order): the predictor under gunicorn, as the demo runs
it (operations.processes; the prediction log migrated first, as the old `make serve` did),
on 127.0.0.1:9696 when that is free so `make traffic` still finds it, else a free port
(`--predictor-port`);
and `mlflow server` on the embedded backend store (MLFLOW_TRACKING_URI) on a free loopback
port, one worker, its job runner off (~2 GB of RSS onebox does not use).  An
MLFLOW_TRACKING_URI that is already a server (http...) is proxied as it is, not started.

MLflow is proxied as the stack's nginx does it: the /mlflow prefix stripped, the server
at its root.  Its UI asks for its scripts and its API with relative paths
(`static-files/...`, `ajax-api/...`), so it works under any prefix and needs no
`--static-prefix` (which would also move the API the predictor and the tests call).

The front door itself is werkzeug's threaded development server with a small WSGI proxy
(urllib3, bodies streamed): enough for one person's browser on this machine, not a
production server (the compose stack's nginx is that).  Nothing is logged per request.

Before `make demo` there is no model and no report: the landing page still answers, and
/try, the API, /reports/ and /mlflow/ answer a page (or JSON) that says to run
`make demo` first; so does the list printed at start.  SIGINT (Ctrl-C) or SIGTERM stops
the front door, then the predictor (gunicorn's graceful stop: its workers drain the
prediction log) and MLflow, and waits until no process of either is left.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from werkzeug.security import safe_join
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.utils import send_file
from werkzeug.wrappers import Request

from core.page_header import PAGES
from core.settings import Settings
from operations import processes

REPO_ROOT = processes.REPO_ROOT
LANDING_PAGE = REPO_ROOT / "gateway" / "index.html"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
PREDICTOR_PORT = 9696  # `make traffic` sends there
# The predictor's paths the front door routes (gateway/nginx.conf; /metrics is not one).
API_PATHS = frozenset({"/predict", "/feedback", "/health", "/model", "/openapi.json"})
# The stack's tools the embedded stack has not: their links answer where to find them.
STACK_ONLY = ("grafana", "prefect", "prometheus", "alertmanager")
FIRST = "run `make demo` first (it returns when done), then `make serve` again"
# Hop-by-hop headers (RFC 9110 7.6.1) stay on their own hop; Host is the upstream's; the
# front door writes its own Date and Server.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"})
OWN_HEADERS = frozenset({"date", "server"})

StartResponse = Callable[..., Any]
WSGIEnviron = dict[str, Any]


@dataclass(frozen=True)
class Upstream:
    """A service behind the front door: where it answers, or why it is not there."""

    name: str
    url: str | None = None
    missing: str = ""
    detail: str = ""  # what the start-up list says beside its URL
    log: Path | None = None

    @property
    def the(self) -> str:
        """Its name in a sentence: "the predictor", "MLflow"."""
        return self.name if self.name[0].isupper() else f"the {self.name}"


class FrontDoor:
    """The WSGI app on the one port: nginx.conf's routes for the embedded stack."""

    def __init__(self, reports_dir: Path, predictor: Upstream, mlflow: Upstream,
                 landing_page: Path = LANDING_PAGE):
        self.reports_dir = reports_dir
        self.predictor = predictor
        self.mlflow = mlflow
        self.landing_page = landing_page
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=16, retries=False)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/":
            return self._landing(environ, start_response)
        if path == "/try":
            return self._proxy(environ, start_response, self.predictor, "/", html_page=True)
        if path in API_PATHS:
            return self._proxy(environ, start_response, self.predictor, path, html_page=False)
        if path in ("/reports", "/mlflow"):
            return _redirect(start_response, path + "/")
        if path.startswith("/reports/"):
            return self._report_file(environ, start_response, path.removeprefix("/reports/"))
        if path.startswith("/mlflow/"):
            return self._proxy(environ, start_response, self.mlflow,
                               path.removeprefix("/mlflow"), html_page=True, prefix="/mlflow")
        if path.strip("/").split("/")[0] in STACK_ONLY:
            return _page(start_response, "404 Not Found", "Only in the compose stack",
                         f"<code>{html.escape(path)}</code> is one of the compose stack's "
                         "tools: <code>make up</code> starts it (Docker). The embedded stack "
                         "serves the try-it page, the reports and MLflow.")
        return _page(start_response, "404 Not Found", "Not found",
                     f"Nothing at <code>{html.escape(path)}</code>.")

    # --- the landing page and the reports: files --------------------------------------------

    def _landing(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _method_not_allowed(start_response)
        body = self.landing_page.read_bytes()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-cache")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _report_file(self, environ: WSGIEnviron, start_response: StartResponse,
                     relative: str) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _method_not_allowed(start_response)
        # nginx's `try_files $uri $uri/index.html =404`, inside the folder only.
        joined = safe_join(str(self.reports_dir), unquote(relative)) if relative else str(
            self.reports_dir)
        target = Path(joined) if joined else None
        if target is not None and target.is_dir():
            target = target / "index.html"
        if target is None or not target.is_file():
            if not (self.reports_dir / "index.html").is_file():
                return _page(start_response, "404 Not Found", "No reports yet",
                             f"Nothing is in {html.escape(str(self.reports_dir))} yet: the "
                             f"demo writes the reports and the model cards; {FIRST}.")
            return _page(start_response, "404 Not Found", "Not found",
                         f"No report at <code>/reports/{html.escape(relative)}</code>; "
                         '<a href="/reports/">the reports</a>.')
        response = send_file(target, environ, conditional=True, max_age=None)
        # Reports are rewritten in place (write-then-rename): never cache them.
        response.headers["Cache-Control"] = "no-cache"
        return response(environ, start_response)

    # --- the predictor and MLflow: proxied ------------------------------------------------------

    def _proxy(self, environ: WSGIEnviron, start_response: StartResponse, upstream: Upstream,
               path: str, *, html_page: bool, prefix: str = "") -> Iterable[bytes]:
        if upstream.url is None:
            if html_page:
                return _page(start_response, "503 Service Unavailable",
                             f"No {upstream.name} yet",
                             html.escape(f"{upstream.missing}: {FIRST}."))
            return _json(start_response, "503 Service Unavailable", {
                "error": f"{upstream.missing}: {FIRST}",
                "problems": [{"field": "request", "problem": f"no {upstream.name}"}]})
        request = Request(environ)
        base = upstream.url.rstrip("/")
        target = base + path + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING")
                                else "")
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in HOP_BY_HOP and name.lower() != "host"}
        headers["Host"] = urlsplit(base).netloc  # MLflow answers only the hosts it knows
        headers["X-Forwarded-For"] = ", ".join(
            part for part in (request.headers.get("X-Forwarded-For"), request.remote_addr)
            if part)
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Host"] = request.host
        body = request.get_data(cache=False) if request.method not in ("GET", "HEAD") else None
        try:
            answer = self.pool.request(
                request.method, target, body=body, headers=headers, redirect=False,
                preload_content=False, decode_content=False,
                timeout=urllib3.Timeout(connect=5, read=300))
        except urllib3.exceptions.HTTPError as exc:
            return _page(start_response, "502 Bad Gateway", f"{upstream.the[0].upper()}"
                         f"{upstream.the[1:]} does not answer",
                         f"{html.escape(upstream.name)} at {html.escape(base)}: "
                         f"{html.escape(str(exc))}. Its log: {html.escape(str(upstream.log))}.")
        out = []
        for name, value in answer.headers.items():
            if name.lower() in HOP_BY_HOP or name.lower() in OWN_HEADERS:
                continue
            if name.lower() == "location":
                value = _outside_location(value, base, prefix)
            out.append((name, value))
        start_response(f"{answer.status} {answer.reason or ''}".strip(), out)
        return _stream(answer)


def _stream(answer: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from answer.stream(64 * 1024, decode_content=False)
    finally:
        answer.release_conn()


def _outside_location(location: str, base: str, prefix: str) -> str:
    """An upstream's redirect as the browser must follow it: through the front door."""
    if location.startswith(base):
        location = location[len(base):] or "/"
    return prefix + location if location.startswith("/") else location


def _redirect(start_response: StartResponse, location: str) -> Iterable[bytes]:
    start_response("301 Moved Permanently", [("Location", location), ("Content-Length", "0")])
    return []


def _method_not_allowed(start_response: StartResponse) -> Iterable[bytes]:
    start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")])
    return []


def _json(start_response: StartResponse, status: str, payload: dict[str, Any]
          ) -> Iterable[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _code(text: str) -> str:
    """`make demo` in a message as <code>make demo</code> (the text is HTML already)."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", text)


def _page(start_response: StartResponse, status: str, title: str, text: str
          ) -> Iterable[bytes]:
    body = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)} - onebox</title></head>"
            "<body style=\"font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;"
            f"padding:0 1rem\"><h1>{html.escape(title)}</h1><p>{_code(text)}</p>"
            "<p><a href=\"/\">Every page of onebox</a></p></body></html>").encode()
    start_response(status, [("Content-Type", "text/html; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
    return [body]


# --- the processes behind it ------------------------------------------------------------------

def live_group_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that still run (zombies waiting for a parent that
    never reaps them are gone for our purpose)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether any member is left
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def stop_group(process: subprocess.Popen, *, whole_group: bool, timeout: float) -> None:
    """SIGTERM the process (gunicorn's master: its graceful stop) or its whole group
    (`mlflow server` and the uvicorn it starts), wait, then SIGKILL whatever of the group
    is left.  Returns when no process of the group runs."""
    pgid = process.pid  # each child leads a session of its own (start_new_session)
    if process.poll() is None:
        try:
            if whole_group:
                os.killpg(pgid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if live_group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    deadline = time.monotonic() + 5
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass
class Child:
    upstream: Upstream
    process: subprocess.Popen
    log_path: Path
    whole_group: bool
    stop_timeout: float
    reported_exit: bool = False


def _log_file(settings: Settings, name: str) -> Path:
    path = settings.home / "logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def launch_mlflow(settings: Settings, children: list[Child]) -> Upstream:
    """`mlflow server` on the embedded store, started (not yet waited for); or the tracking
    server MLFLOW_TRACKING_URI already names; or why there is none."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        return Upstream("MLflow", uri, detail=f"the tracking server at {uri}")
    store = _sqlite_path(uri)
    if store is not None and not store.is_file():
        return Upstream("MLflow", missing=f"No MLflow store at {store} yet (the demo trains "
                        "and registers the model there)")
    port = processes.free_port()
    log_path = _log_file(settings, "mlflow")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--no-serve-artifacts"]
    if settings.mlflow_artifact_root:
        command += ["--default-artifact-root", settings.mlflow_artifact_root]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=settings.home, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            start_new_session=True)
    upstream = Upstream("MLflow", f"http://127.0.0.1:{port}", detail=f"the store {uri}",
                        log=log_path)
    # `mlflow server` runs uvicorn as a child of its own: SIGTERM the whole group.
    children.append(Child(upstream, process, log_path, whole_group=True, stop_timeout=15))
    return upstream


def champion_version(mlflow: Upstream, model_name: str) -> str | None:
    """The version holding @champion, asked of the MLflow server (None: there is none)."""
    assert mlflow.url is not None
    answer = requests.get(f"{mlflow.url}/api/2.0/mlflow/registered-models/alias",
                          params={"name": model_name, "alias": "champion"}, timeout=30)
    if answer.status_code in (400, 404) and answer.json().get("error_code") in (
            "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # as core.registry reads it
        return None
    answer.raise_for_status()
    return str(answer.json()["model_version"]["version"])


def launch_predictor(settings: Settings, children: list[Child],
                     port: int | None = None) -> Child:
    """The predictor under gunicorn, started (not yet waited for) once the prediction log
    is migrated."""
    log_path = _log_file(settings, "predictor")
    # The embedded stack's setup, as compose's `setup` step: the prediction log's tables
    # migrated to this version's (the predictor itself never migrates them).
    with open(log_path, "ab") as log:
        subprocess.run([sys.executable, "-m", "core.migrations", "upgrade"], cwd=REPO_ROOT,
                       env={**os.environ, "ONEBOX_HOME": str(settings.home)},
                       stdout=log, stderr=subprocess.STDOUT, check=True)
    port = port or (PREDICTOR_PORT if processes.port_is_free(PREDICTOR_PORT)
                    else processes.free_port())
    process = processes.start_predictor(port, {"ONEBOX_HOME": str(settings.home)}, log_path)
    # Above gunicorn's graceful_timeout (30 s), as processes.stop: a slow drain is not killed.
    child = Child(Upstream("predictor", f"http://127.0.0.1:{port}", log=log_path), process,
                  log_path, whole_group=False, stop_timeout=45)
    children.append(child)
    return child


def start_services(settings: Settings, children: list[Child], predictor_port: int | None = None
                   ) -> tuple[Upstream, Upstream]:
    """MLflow and the predictor, started side by side and waited for: (predictor, MLflow).

    The predictor reads the store itself (MLFLOW_TRACKING_URI), not through this MLflow, so
    it starts while MLflow does; when MLflow then says there is no @champion, it is stopped
    (it could not start without one) and the list says what to run first."""
    mlflow = launch_mlflow(settings, children)
    if mlflow.url is None:
        return Upstream("model", missing="No model to serve yet"), mlflow
    started_mlflow = children[-1] if children else None
    predictor = launch_predictor(settings, children, predictor_port)
    if started_mlflow is not None:
        processes.wait_until_healthy(f"{mlflow.url}/health", started_mlflow.process,
                                     timeout=180)
    try:
        version = champion_version(mlflow, settings.model_name)
    except (requests.RequestException, ValueError) as exc:  # an outside MLflow
        print(f"   could not ask MLflow for @champion ({exc}); trying the predictor anyway",
              flush=True)
        version = "?"
    if version is None:
        stop_group(predictor.process, whole_group=True, timeout=15)
        children.remove(predictor)
        return Upstream("model", missing=f"No @champion of {settings.model_name} at "
                        f"{settings.mlflow_tracking_uri} yet"), mlflow
    url = predictor.upstream.url
    health = processes.wait_until_healthy(f"{url}/health", predictor.process, timeout=180)
    model = health.get("model") or {}
    predictor.upstream = Upstream("predictor", url, log=predictor.log_path,
                                  detail=f"{model.get('name')} v{model.get('version')}")
    return predictor.upstream, mlflow


def _shown(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host


def pages_list(base: str, predictor: Upstream, mlflow: Upstream, reports_dir: Path,
               logs: list[Path]) -> str:
    """What `make serve` prints once everything answers: every URL, or why it is not there."""
    label = {path: f"{name}: {what}" for path, name, what in PAGES}
    have_reports = (reports_dir / "index.html").is_file()
    reports = label["/reports/"] if have_reports else f"No reports in {reports_dir} yet"
    rows = [
        ("/", label["/"]),
        ("/try", f"{label['/try'].split(':')[0]}: {predictor.detail}" if predictor.url
         else predictor.missing),
        ("/reports/", reports),
        ("/mlflow/", f"{label['/mlflow/']} ({mlflow.detail})" if mlflow.url
         else mlflow.missing),
    ]
    if predictor.url:
        rows.append(("/predict", "the predictor's API, no key: POST /predict and /feedback; "
                     "GET /health, /model, /openapi.json"))
    width = max(len(base + path) for path, _ in rows)
    lines = [f"onebox: every page of the embedded stack on {base}/ until Ctrl-C"]
    lines += [f"  {base + path:<{width}}  {text}" for path, text in rows]
    if predictor.url:
        traffic = (": make traffic sends there" if predictor.url.endswith(f":{PREDICTOR_PORT}")
                   else "")
        lines.append(f"  (the predictor itself answers on {predictor.url} too{traffic})")
    if logs:
        lines.append("  logs: " + ", ".join(str(path) for path in logs))
    if not (predictor.url and mlflow.url and have_reports):
        lines.append(f"  {FIRST[0].upper()}{FIRST[1:]}.")
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(host: str, port: int, predictor_port: int | None = None) -> int:
    settings = Settings.from_env()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    # Listen first: a port in use stops here, before anything is started.
    placeholder = Upstream("service", missing="starting")
    app = FrontDoor(settings.reports_dir, placeholder, placeholder)
    try:
        server: BaseWSGIServer = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as exc:  # werkzeug says why and exits when the port is taken
        why = exc.strerror if isinstance(exc, OSError) else "in use"
        print(f"make serve: cannot listen on {host}:{port} ({why}); another port: "
              f"make serve SERVE_ARGS='--port {port + 1}'", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM both stop everything.  Set for SIGINT too: a shell without job
    # control starts a background command with SIGINT ignored, and Python then keeps it so.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    children: list[Child] = []
    thread: threading.Thread | None = None
    status = 0
    try:
        print(f"== starting MLflow and the predictor of {settings.home} ...", flush=True)
        predictor, mlflow = start_services(settings, children, predictor_port)
        app.mlflow, app.predictor = mlflow, predictor
        thread = threading.Thread(target=server.serve_forever, name="front-door", daemon=True)
        thread.start()
        print(pages_list(f"http://{_shown(host)}:{port}", predictor, mlflow,
                         settings.reports_dir, [child.log_path for child in children]),
              flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"  note: listening on {host}, beyond this machine: the embedded API asks "
                  "no key and MLflow no login", flush=True)
        while True:
            time.sleep(1)
            for child in children:
                if child.process.poll() is not None and not child.reported_exit:
                    child.reported_exit = True
                    print(f"make serve: {child.upstream.the} exited (code "
                          f"{child.process.returncode}); its log: {child.log_path}",
                          flush=True)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a service that did not start: say which, then clean up
        print(f"make serve: {exc}; the logs are in {settings.home / 'logs'}", file=sys.stderr,
              flush=True)
        status = 1
    finally:
        # A second Ctrl-C must not leave a child behind; each stop is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping: the front door" + "".join(
            f", {child.upstream.the}" for child in reversed(children)), flush=True)
        if thread is not None:
            server.shutdown()
        server.server_close()
        app.pool.clear()  # our keep-alive connections would hold the services' stops
        took = []
        for child in reversed(children):
            began = time.monotonic()
            stop_group(child.process, whole_group=child.whole_group,
                       timeout=child.stop_timeout)
            took.append(f"{child.upstream.the} in {time.monotonic() - began:.1f} s")
        print(f"stopped{': ' + ', '.join(took) if took else ''}; nothing of make serve runs",
              flush=True)
    return status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m operations.serve",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"the address to listen on ({DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the one port of every page ({DEFAULT_PORT})")
    parser.add_argument("--predictor-port", type=int, default=None,
                        help=f"the predictor's own port on 127.0.0.1 ({PREDICTOR_PORT} when "
                             "free, else any free one)")
    parser.add_argument("--business", default=None,
                        help="the demo business `make demo` ran (churn, flights; make serve "
                             "DEMO=flights): its model; default: MODEL_NAME's")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.business:
        from simulation.demo_tables import by_short_name

        # The settings `make demo --business` ran with (its model's name above all).
        os.environ.update(by_short_name(args.business).settings())
    sys.exit(serve(args.host, args.port, args.predictor_port))


if __name__ == "__main__":
    main()
