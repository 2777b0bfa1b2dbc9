"""The README's quick start, run as written against the embedded demo: `make demo` (small,
as tests/test_demo.py runs it), `make serve` (the command its target runs, on a free port),
every page it prints, the README's curl as pasted, and Ctrl-C leaving nothing running.

One demo for the whole walk: the pages, the curl and the stop are steps of one test, in
the order a newcomer takes them (a second demo would cost as much again)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from operations.processes import free_port
from tests.test_demo import BUSINESS_SETTINGS, run_demo

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The README's request to the embedded predictor, as a reader pastes it.
CURL = re.compile(r"^curl -s -X POST http://127\.0\.0\.1:8080/predict.*?\}'$", re.M | re.S)
# The same request, for the walk while the README holds none (its own test says so): one
# customer of core/schemas/churn.yaml.
CURL_HERE = """curl -s -X POST http://127.0.0.1:8080/predict \\
  -H 'Content-Type: application/json' -d '{
  "customer_age": 45, "gender": "M", "dependent_count": 3, "education_level": 3,
  "marital_status": "married", "income_category": 2, "card_category": "blue",
  "months_on_book": 39, "total_relationship_count": 5,
  "credit_limit": 12691.0, "total_revolving_bal": 777.0}'"""
READY = "until Ctrl-C"


def readme_curl() -> str | None:
    found = CURL.search(README.read_text(encoding="utf-8"))
    return found[0] if found else None


# --- the processes of make serve, read from /proc -----------------------------------------------

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent, process group) of a process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _every_pid() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def process_tree(root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in _every_pid():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def still_running(groups: set[int]) -> list[str]:
    """The processes of `groups` that run (a zombie has finished), with their command."""
    running = []
    for pid in _every_pid():
        stat = _stat(pid)
        if stat is not None and stat[2] in groups and stat[0] not in ("Z", "X"):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            running.append(f"{pid}: {command.decode(errors='replace')[:160]}")
    return running


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- make serve, started as its target starts it ----------------------------------------------

@dataclass
class Serve:
    process: subprocess.Popen
    output: Path
    url: str

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_ready(self, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while READY not in (text := self.text()):
            assert self.process.poll() is None, f"make serve exited:\n{text}"
            assert time.monotonic() < deadline, f"make serve not ready in {timeout:.0f} s:\n{text}"
            time.sleep(0.5)
        return text

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]


@contextmanager
def make_serve(home: Path, *args: str) -> Iterator[Serve]:
    """`python -m operations.serve` (what `make serve` runs) on a free port, in a session
    of its own as a terminal's foreground job; whatever is left is killed at the end."""
    port = free_port()
    output = home.parent / f"serve-{port}.out"
    env = {k: v for k, v in os.environ.items() if k not in BUSINESS_SETTINGS}
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "operations.serve", "--port", str(port), *args],
            env={**env, "ONEBOX_HOME": str(home), "PREFECT_HOME": str(home / "prefect")},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    groups = {process.pid}
    try:
        yield Serve(process, output, f"http://127.0.0.1:{port}")
    finally:
        groups |= {stat[2] for pid in process_tree(process.pid) if (stat := _stat(pid))}
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        process.wait(30)


def ctrl_c(serve: Serve, timeout: float = 60) -> tuple[set[int], float]:
    """SIGINT to make serve's group, as Ctrl-C in its terminal sends it; the process groups
    it had (its own, the predictor's, MLflow's) and the seconds it took to exit."""
    groups = {stat[2] for pid in process_tree(serve.process.pid) if (stat := _stat(pid))}
    began = time.monotonic()
    os.killpg(serve.process.pid, signal.SIGINT)
    code = serve.process.wait(timeout)
    took = time.monotonic() - began
    assert code == 0, serve.text()[-3000:]
    return groups, took


def assert_nothing_left(groups: set[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (left := still_running(groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"still running after make serve stopped: {left}"


# --- the tests ---------------------------------------------------------------------------------

def test_the_readme_holds_the_quick_starts_curl() -> None:
    """What the walk below runs is the README's own request (it falls back to a copy of it
    while the README has none, so that this test alone says so)."""
    assert CURL.fullmatch(CURL_HERE)  # the copy is the shape the README's must have
    text = README.read_text(encoding="utf-8")
    assert readme_curl(), "README.md has no `curl -s -X POST http://127.0.0.1:8080/predict " \
                          "... }'` for the embedded demo"
    assert "make serve" in text


def test_make_serve_runs_the_front_door_with_its_arguments() -> None:
    done = subprocess.run(["make", "-n", "-o", ".venv/.installed", "serve",
                           "SERVE_ARGS=--port 8181", "DEMO=flights"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert re.search(r"python -m operations\.serve --business flights --port 8181$",
                     done.stdout, re.M), done.stdout


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_quick_start_serves_every_page_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # 1. make demo: it returns, and its summary ends by naming the next command.
    summary = run_demo(home)  # no --business: SCHEMA_PATH's default, churn
    assert "model            churn-classifier v1" in summary
    assert re.search(r"holdout AUC +0\.\d{4} \(threshold 0\.\d\d\)", summary), summary
    drifted = next(line for line in summary.splitlines() if line.startswith("drifted"))
    assert re.search(r"AUC estimated 0\.\d{3}, live 0\.\d{3}$", drifted), drifted
    assert "no feature drifted" not in drifted
    last = summary.strip().splitlines()[-1]
    assert last.startswith("pages") and "make serve" in last, summary
    assert "http://127.0.0.1:8080/" in last, last

    # 2. make serve: the list of pages, once everything answers.
    predictor_port = free_port()
    with make_serve(home, "--predictor-port", str(predictor_port)) as serve:
        started = time.monotonic()
        listed = serve.wait_ready()
        ready_after = time.monotonic() - started
        for path in ("/", "/try", "/reports/", "/mlflow/", "/predict"):
            assert f"{serve.url}{path} " in listed, listed
        assert "churn-classifier v1" in listed and "make demo" not in listed, listed

        # The landing page: the one header, every page linked.
        landing = serve.get("/")
        assert landing.status_code == 200 and 'class="onebox-nav"' in landing.text
        for link in ("/try", "/reports/", "/mlflow/"):
            assert f'href="{link}"' in landing.text, link

        # /try is the predictor's page, through the front door; it calls /model there.
        page = serve.get("/try")
        assert page.status_code == 200 and "try the model" in page.text.lower()
        own = requests.get(f"http://127.0.0.1:{predictor_port}/", timeout=60)
        assert page.text == own.text
        assert serve.get("/model").json()["name"] == "churn-classifier"
        assert serve.get("/health").json()["status"] == "ok"

        # The reports: the index lists the demo's windows (a drift report each) and links
        # the model card, and each answers.
        index = serve.get("/reports/")
        assert index.status_code == 200 and index.headers["Cache-Control"] == "no-cache"
        windows = sorted(p.name for p in (home / "reports").glob("drift-*.html"))
        assert len(windows) == 2, windows
        for name in windows:
            assert f'href="{name}"' in index.text, name
            assert serve.get(f"/reports/{name}").status_code == 200
        assert 'href="models/churn-classifier-v1.html"' in index.text
        card = serve.get("/reports/models/churn-classifier-v1.html")
        assert card.status_code == 200 and "churn-classifier v1" in card.text
        assert serve.get("/reports/no-such-report.html").status_code == 404

        # MLflow's UI under /mlflow/: its page, its scripts (relative paths), and the API
        # its scripts call, through the prefix: the registered model and its @champion.
        ui = serve.get("/mlflow/")
        assert ui.status_code == 200 and "<title>MLflow</title>" in ui.text
        script = re.search(r'src="(static-files/[^"]+\.js)"', ui.text)
        assert script, ui.text
        assert serve.get(f"/mlflow/{script[1]}").status_code == 200
        models = serve.get("/mlflow/ajax-api/2.0/mlflow/registered-models/search").json()
        (model,) = [m for m in models["registered_models"] if m["name"] == "churn-classifier"]
        assert {"alias": "champion", "version": "1"} in model["aliases"]

        # The README's curl, as pasted (the port the only change).
        command = (readme_curl() or CURL_HERE).replace("127.0.0.1:8080", serve.url[7:])
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              timeout=60, check=True)
        answer = json.loads(done.stdout)
        assert answer["prediction_id"] and 0 <= answer["churn_probability"] <= 1, answer
        assert answer["model"] == {"name": "churn-classifier", "version": "1"}

        # 3. Ctrl-C: make serve, gunicorn and its workers, mlflow and its uvicorn, all gone.
        commands = [command_of(pid) for pid in process_tree(serve.process.pid)]
        assert any("gunicorn" in c for c in commands), commands
        assert any("mlflow server" in c for c in commands), commands
        assert any("uvicorn" in c for c in commands), commands
        groups, took = ctrl_c(serve)
        assert len(groups) >= 3, groups  # its own, the predictor's, MLflow's
        assert_nothing_left(groups)
        assert serve.text().rstrip().endswith("nothing of make serve runs"), serve.text()
        print(f"\nmake serve: ready in {ready_after:.1f} s, stopped in {took:.1f} s")


@pytest.mark.slow
def test_make_serve_before_the_demo_says_to_run_it_first(tmp_path: Path) -> None:
    """Nothing made yet: the landing page answers, every other page says what to run, no
    store is created, and Ctrl-C stops it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("not a report")
    with make_serve(home) as serve:
        listed = serve.wait_ready(timeout=120)
        assert "Run `make demo` first" in listed, listed
        assert serve.get("/").status_code == 200
        for path in ("/try", "/mlflow/", "/reports/"):
            page = serve.get(path)
            assert page.status_code in (404, 503), (path, page.status_code)
            assert "<code>make demo</code>" in page.text, (path, page.text)
        refused = requests.post(serve.url + "/predict", json={}, timeout=60)
        assert refused.status_code == 503 and "make demo" in refused.json()["error"]
        assert "make up" in serve.get("/grafana/").text  # the stack's tools: where they are
        # Nothing outside the reports folder, however the path is spelt.
        host = serve.url.removeprefix("http://")
        for path in ("/reports/../secret.txt", "/reports/%2e%2e/secret.txt",
                     "/reports/..%2fsecret.txt"):
            connection = http.client.HTTPConnection(host, timeout=30)
            connection.request("GET", path)
            answer = connection.getresponse()
            assert answer.status == 404 and b"not a report" not in answer.read(), path
            connection.close()
        groups, _ = ctrl_c(serve)
        assert_nothing_left(groups)
    assert not (home / "mlflow.db").exists()
