"""`python -m benchmarks.predictor`: ceiling, `mlflow models serve` and the onebox predictor under
the same wrk load, one after another, in one run; figures, ratios and targets printed.

The home (data, a trained @champion) is made by the stack's own commands in
subprocesses (`python -m simulation.demo_tables`, `python -m orchestration.train`):
server/ may not import them, and a train flow run in this process would leave its
temporary Prefect server running through the measurements.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.predictor import servers
from benchmarks.predictor.wrk import WrkMissing, WrkResult, require_wrk, run_wrk
from core.api_keys import new_key
from core.schema import Schema
from core.settings import Settings
from server.process import GUNICORN_CONFIG

say = partial(print, flush=True)

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REQUEST_SEED = 2024  # not the training table's seed: requests are new customers

# Targets (issue 3): onebox against the ceiling and against mlflow models serve.
CEILING_SHARE_TARGET = 0.5
MLFLOW_MULTIPLE_TARGET = 20.0
P99_TARGET_MS = 25.0
BATCH_ROWS_TARGET = 100_000
# Issue 11: checking an API key on every request costs under 5% of the predictor's CPU.
AUTH_COST_TARGET = 0.05
# A number is served within 10% of a probability's speed (issue 25): the same records,
# a regressor searched as the classifier is, both predictors up at once, measured in turns.
NUMBER_SPEED_TARGET = 0.9
NUMBER_MODEL = "churn-risk-score"
NUMBER_TARGET = "risk_score"


class SetupFailed(RuntimeError):
    """Making the benchmark's home or its request data failed."""


@dataclass(frozen=True)
class Load:
    connections: int
    threads: int
    seconds: float
    warmup_seconds: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.predictor",
        description="Benchmark the predictor against a constant-answer ceiling and "
                    "mlflow models serve (needs wrk and PostgreSQL).")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of measured load per run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of unmeasured load before each run (default 3)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections for single-record runs (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--batch-connections", type=int, default=4,
                        help="wrk connections for the batch runs (default 4)")
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="records per batch request (default 1000, the default limit)")
    parser.add_argument("--home", type=Path, default=None,
                        help="an ONEBOX_HOME on embedded defaults (MLflow store in "
                             "HOME/mlflow.db) with a trained @champion, read only "
                             "(default: a temporary one, trained now)")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--mlflow-workers", type=int, default=None,
                        help="uvicorn workers for mlflow models serve (default: mlflow's, 1)")
    parser.add_argument("--postgres-dsn",
                        default=os.environ.get("TEST_POSTGRES_DSN", DEFAULT_ADMIN_DSN),
                        help="server to create the temporary prediction-log database on "
                             "(default TEST_POSTGRES_DSN or the local server)")
    parser.add_argument("--task-rounds", type=int, default=3,
                        help="turns of the binary and the regression predictor (default 3)")
    parser.add_argument("--auth-rounds", type=int, default=3,
                        help="alternating runs without and with an API key (default 3)")
    parser.add_argument("--drain-timeout", type=float, default=180.0,
                        help="seconds to wait for the prediction log to reach PostgreSQL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_wrk()
    except WrkMissing as exc:
        say(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="onebox-bench-") as tmp:
        try:
            run(args, Path(tmp))
        except (servers.ServerFailed, SetupFailed) as exc:
            say(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def run(args: argparse.Namespace, scratch: Path) -> None:
    load = Load(args.connections, args.threads, args.duration, args.warmup)
    batch_load = Load(args.batch_connections, args.threads, args.duration, args.warmup)
    logs = scratch / "logs"
    logs.mkdir()
    say(f"onebox predictor benchmark: {os.cpu_count()} CPUs, load average "
        f"{_load_average()} at start")

    home = args.home.resolve() if args.home else prepare_home(scratch / "home", args)
    settings = Settings.from_env({"ONEBOX_HOME": str(home)})
    if not (home / "mlflow.db").is_file():
        raise SetupFailed(f"{home} has no MLflow store (mlflow.db); train there first "
                          "(make train) or leave out --home")
    schema = Schema.load(settings.schema_path)
    twins = prepare_task_twins(scratch, settings)
    record, batch = request_records(scratch, schema, args.batch_size)
    single_body = _write_json(scratch / "single.json", record)
    batch_body = _write_json(scratch / "batch.json", batch)
    mlflow_body = _write_json(scratch / "mlflow.json", {"dataframe_records": [record]})
    say(f"request record: {json.dumps(record)}")
    say(f"batch body: {len(batch)} records, {batch_body.stat().st_size:,} bytes")

    # Temp files of the servers (mlflow's copy of the model, gunicorn's metrics folder) go
    # under the bench's own folder, removed at the end even if a server is killed.
    (scratch / "tmp").mkdir()
    base_env = servers.child_env(ONEBOX_HOME=str(home), TMPDIR=str(scratch / "tmp"))
    say(f"gunicorn ({GUNICORN_CONFIG}, used by ceiling and predictor alike): "
        f"{gunicorn_settings(base_env)}")
    say(f"wrk: {load.threads} threads, {load.connections} connections "
        f"({batch_load.connections} for batches), {load.seconds:g} s measured after "
        f"{load.warmup_seconds:g} s warm-up\n")
    results: dict[str, Measurement] = {}

    with servers.ceiling(base_env, logs / "ceiling.log") as server:
        servers.require_ok(server.url + "/predict", single_body.read_bytes(), "the ceiling",
                           "churn_probability")
        results["ceiling"] = measure("ceiling (constant JSON)", server, "/predict",
                                     single_body, load)

    model_uri = f"models:/{settings.model_name}@champion"
    mlflow_env = {**base_env, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    workers = f"{args.mlflow_workers} workers" if args.mlflow_workers else "1 worker"
    with servers.mlflow_serve(model_uri, mlflow_env, logs / "mlflow.log",
                              args.mlflow_workers) as server:
        servers.require_ok(server.url + "/invocations", mlflow_body.read_bytes(),
                           "mlflow models serve", "predictions")
        results["mlflow"] = measure(f"mlflow models serve, {workers}", server,
                                    "/invocations", mlflow_body, load)

    with servers.temporary_database(args.postgres_dsn) as database:
        onebox_env = {**base_env, "PREDICTION_STORE_URL": database,
                      "MODEL_CACHE_DIR": str(scratch / "model-cache"),
                      "SPOOL_DIR": str(scratch / "spool")}
        with servers.onebox({**onebox_env, "PREDICTION_LOG": "on"},
                            logs / "onebox-log-on.log") as server:
            _check_onebox(server.url, single_body, batch_body, len(batch))

            log_watch = PredictionLogWatch(server.url, database, args.drain_timeout)
            # The CPU of a logged run is counted until its log is written.
            results["log_on"] = measure("onebox, log on (PostgreSQL)", server, "/predict",
                                        single_body, load, settle=log_watch.settle)
            results["batch_log_on"] = measure(
                f"onebox batch of {len(batch)}, log on", server, "/predict", batch_body,
                batch_load, records=len(batch), settle=log_watch.settle)
            batch_log_rate = log_watch.rows_per_second_under_load
            answered = servers.answered_predictions(server.url)
        logged = (servers.count_rows(database), answered)
        say(f"  after the predictor stopped: logged {logged[0]:,} of {answered:,} answered")

        with servers.onebox({**onebox_env, "PREDICTION_LOG": "off"},
                            logs / "onebox-log-off.log") as server:
            _check_onebox(server.url, single_body, batch_body, len(batch))
            results["log_off"] = measure("onebox, log off", server, "/predict", single_body,
                                         load)
            results["batch_log_off"] = measure(
                f"onebox batch of {len(batch)}, log off", server, "/predict", batch_body,
                batch_load, records=len(batch))
            # What an explanation costs a record: the same server and bodies, ?explain=true.
            servers.require_ok(server.url + "/predict?explain=true", single_body.read_bytes(),
                               "onebox with ?explain=true", "contributions")
            results["explain"] = measure("onebox, explain, log off", server,
                                         "/predict?explain=true", single_body, load)
            results["batch_explain"] = measure(
                f"onebox batch of {len(batch)}, explain", server, "/predict?explain=true",
                batch_body, batch_load, records=len(batch))
            # What API keys cost: the same predictor with keys, every request with a valid
            # one; log off, so the check is most of the difference.  The two alternate, so
            # the machine's other load falls on both.
            token, key = new_key("bench", ["predict"])
            with servers.onebox({**onebox_env, "PREDICTION_LOG": "off",
                                 "PREDICTOR_API_KEYS": key.spec()},
                                logs / "onebox-keys.log") as keyed:
                _check_onebox(keyed.url, single_body, batch_body, len(batch),
                              authorization=f"Bearer {token}")
                for round_ in range(1, args.auth_rounds + 1):
                    results[f"keys_off_{round_}"] = measure(
                        f"onebox, no keys ({round_})", server, "/predict", single_body, load)
                    results[f"keys_on_{round_}"] = measure(
                        f"onebox, API key ({round_})", keyed, "/predict", single_body, load,
                        authorization=f"Bearer {token}")
            # The serving path of a number against a probability's: two champions of one
            # shape (prepare_task_twins) on the same records, log off, taking turns.
            twin_env = {**onebox_env, "PREDICTION_LOG": "off"}
            with servers.onebox({**twin_env, **twins["binary"],
                                 "MODEL_CACHE_DIR": str(scratch / "binary-twin-cache"),
                                 "SPOOL_DIR": str(scratch / "binary-twin-spool")},
                                logs / "onebox-binary-twin.log") as binary, \
                    servers.onebox({**twin_env, **twins["number"],
                                    "MODEL_CACHE_DIR": str(scratch / "number-twin-cache"),
                                    "SPOOL_DIR": str(scratch / "number-twin-spool")},
                                   logs / "onebox-number-twin.log") as number:
                _check_onebox(binary.url, single_body, batch_body, len(batch))
                _check_onebox(number.url, single_body, batch_body, len(batch),
                              expect_key=NUMBER_TARGET)
                for round_ in range(1, args.task_rounds + 1):
                    # Who goes first alternates: neither always runs on the heels of the
                    # other's load.
                    turns = [("binary", binary), ("number", number)]
                    for task, serving in turns if round_ % 2 else turns[::-1]:
                        results[f"{task}_{round_}"] = measure(
                            f"onebox, {task} ({round_})", serving, "/predict", single_body,
                            load)
                        results[f"{task}_batch_{round_}"] = measure(
                            f"onebox, {task} batch ({round_})", serving, "/predict",
                            batch_body, batch_load, records=len(batch))

    say(f"\nload average at the end: {_load_average()}")
    report(results, logged, batch_log_rate)


def prepare_home(home: Path, args: argparse.Namespace) -> Path:
    """A temporary ONEBOX_HOME with generated data and a trained, promoted @champion."""
    (home / "prefect").mkdir(parents=True)
    # Prefect's temporary server gets 20 s to start by default; on two busy cores that
    # is sometimes too little, and a failed home wastes the whole run.
    env = servers.child_env(ONEBOX_HOME=str(home), PREFECT_HOME=str(home / "prefect"),
                            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    data = Settings.from_env({"ONEBOX_HOME": str(home)}).data_path
    say(f"training a champion in {home} ({args.train_rows} rows, {args.trials} trials)...")
    started = time.perf_counter()
    _run_quietly([sys.executable, "-m", "simulation.demo_tables", "--rows",
                  str(args.train_rows), "--seed", "42", "--out", str(data)], env,
                 home / "generator.log")
    _run_quietly([sys.executable, "-m", "orchestration.train", "--trials", str(args.trials),
                  "--data-path", str(data)], env, home / "train.log")
    say(f"trained in {time.perf_counter() - started:.0f} s")
    return home


def prepare_task_twins(scratch: Path, churn: Settings) -> dict[str, dict[str, str]]:
    """Two champions of one shape, so the bench compares the serving paths, not the
    models: the churn table as it is, and a regression business on the same features (a
    risk score from the generator's own churn probability, with noise, as its target).
    Each is searched with one trial of the same seed, which draws the same hyperparameters
    (checked), so both have as many trees of the same depth.  Returns their environments."""
    import numpy as np
    import yaml

    from simulation.generator import churn_probability
    from simulation.loader import load_dataset

    schema = Schema.load(churn.schema_path)
    number = scratch / "number-twin"
    number.mkdir()
    # The schema's columns, whichever layout the table is in (the generator's, Kaggle's).
    frame = load_dataset(churn.data_path, schema).drop(columns=[schema.target])
    noise = np.random.default_rng(REQUEST_SEED).normal(0, 5, len(frame))
    frame[NUMBER_TARGET] = 100 * churn_probability(frame) + noise
    frame.to_csv(number / "risk.csv", index=False)
    described = yaml.safe_load(churn.schema_path.read_text())
    described.update(name="churn_risk_score", task="regression",
                     target={"name": NUMBER_TARGET, "unit": "points"})
    (number / "risk.yaml").write_text(yaml.safe_dump(described))
    twins = {
        "binary": {"ONEBOX_HOME": str(scratch / "binary-twin"),
                   "DATA_PATH": str(churn.data_path)},
        "number": {"ONEBOX_HOME": str(number), "MODEL_NAME": NUMBER_MODEL,
                   "SCHEMA_PATH": str(number / "risk.yaml"),
                   "DATA_PATH": str(number / "risk.csv")},
    }
    chosen = {}
    for task, env in twins.items():
        home = Path(env["ONEBOX_HOME"])
        (home / "prefect").mkdir(parents=True, exist_ok=True)
        say(f"training the {task} twin in {home} (one trial)...")
        started = time.perf_counter()
        _run_quietly([sys.executable, "-m", "orchestration.train", "--trials", "1"],
                     servers.child_env(**env, PREFECT_HOME=str(home / "prefect"),
                                       PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120"),
                     home / "train.log")
        found = re.search(r"params (\{.*\})", (home / "train.log").read_text())
        if found is None:
            raise SetupFailed(f"the {task} twin's train log names no hyperparameters: "
                              f"{servers.log_tail(home / 'train.log')}")
        chosen[task] = found.group(1)
        say(f"  trained in {time.perf_counter() - started:.0f} s: {chosen[task]}")
    if len(set(chosen.values())) != 1:
        raise SetupFailed(f"the twins drew different hyperparameters: {chosen}")
    return twins


def _run_quietly(argv: list[str], env: dict[str, str], log_path: Path) -> None:
    with open(log_path, "wb") as log:
        done = subprocess.run(argv, env=env, cwd=servers.REPO_ROOT, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SetupFailed(f"{' '.join(argv[1:])} failed ({done.returncode}); "
                                   f"its output ends:\n{servers.log_tail(log_path)}")


def request_records(scratch: Path, schema: Schema, batch_size: int) -> tuple[dict, list[dict]]:
    """Request bodies from the simulator's generator: a batch, and one record of it.

    The single record is the first with no null field, so mlflow's schema enforcement
    (integer columns) takes the very record the others get.
    """
    path = scratch / "requests.csv"
    _run_quietly([sys.executable, "-m", "simulation.demo_tables", "--rows", str(batch_size),
                  "--seed", str(REQUEST_SEED), "--out", str(path)],
                 servers.child_env(ONEBOX_HOME=str(scratch)), scratch / "generator.log")
    with open(path, newline="") as fh:
        batch = [_record_from_csv_row(row, schema) for row in csv.DictReader(fh)]
    for i, record in enumerate(batch):
        schema.validate_record(record, where=f"[{i}].")  # raises if the generator drifted
    single = next(r for r in batch if all(v is not None for v in r.values()))
    return single, batch


def _record_from_csv_row(row: dict[str, str], schema: Schema) -> dict[str, Any]:
    # simulation.traffic.records_from_frame does this from a DataFrame; server/ may not
    # import simulation/, and the CSV's text needs the schema's types back anyway.
    record: dict[str, Any] = {}
    for feature in schema.features:
        text = row[feature.name]
        if text == "":
            record[feature.name] = None
        elif feature.is_categorical:
            record[feature.name] = text
        elif feature.kind in ("integer", "ordinal"):
            record[feature.name] = int(float(text))
        else:
            record[feature.name] = float(text)
    return record


def _write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def gunicorn_settings(env: dict[str, str]) -> str:
    """What gunicorn reads from the config file under this environment."""
    probe = ("import runpy; c = runpy.run_path('" + GUNICORN_CONFIG + "'); "
             "print(c['worker_class'], c['workers'], c['threads'])")
    with tempfile.TemporaryDirectory(prefix="onebox-bench-metrics-") as metrics:
        # A metrics folder of its own, so the probe makes none it would leave behind.
        out = subprocess.run([sys.executable, "-c", probe], cwd=servers.REPO_ROOT,
                             env={**env, "PROMETHEUS_MULTIPROC_DIR": metrics},
                             capture_output=True, text=True, check=True).stdout.split()
    worker_class, workers, threads = out
    return f"{worker_class}, {workers} workers x {threads} threads"


def _check_onebox(url: str, single_body: Path, batch_body: Path, batch_size: int, *,
                  authorization: str | None = None,
                  expect_key: str = "churn_probability") -> None:
    servers.require_ok(url + "/predict", single_body.read_bytes(), "the onebox predictor",
                       expect_key, authorization=authorization)
    answer = servers.require_ok(url + "/predict", batch_body.read_bytes(),
                                "the onebox predictor (batch)", "predictions",
                                authorization=authorization)
    if len(answer["predictions"]) != batch_size:
        raise servers.ServerFailed(f"the predictor answered {len(answer['predictions'])} "
                                   f"predictions to a batch of {batch_size}")


@dataclass(frozen=True)
class Measurement:
    label: str
    wrk: WrkResult
    connections: int
    records: int             # per request
    cpu_seconds: float       # the server's processes, over the measured run (and its drain)

    @property
    def rate(self) -> float:
        return self.wrk.requests_per_second

    @property
    def rows_per_second(self) -> float:
        return self.rate * self.records

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / max(self.wrk.requests, 1)

    @property
    def cpu_us_per_row(self) -> float:
        return 1000 * self.cpu_ms_per_request / self.records


def measure(label: str, server: servers.Server, path: str, body: Path, load: Load, *,
            records: int = 1, settle: Callable[[], str] | None = None,
            authorization: str | None = None) -> Measurement:
    """Warm up, then load `server` with wrk; `settle` waits for work the load left behind
    (the prediction log) and says how it went, and its CPU is counted with the run's."""
    url = server.url + path
    if load.warmup_seconds > 0:
        run_wrk(url, body, connections=load.connections, threads=load.threads,
                seconds=load.warmup_seconds, authorization=authorization)
    if settle is not None:
        settle()  # the warm-up's log is written before the measured run starts
    cpu_before = server.cpu_seconds()
    result = run_wrk(url, body, connections=load.connections, threads=load.threads,
                     seconds=load.seconds, authorization=authorization)
    note = settle() if settle is not None else None
    cpu = server.cpu_seconds() - cpu_before
    measured = Measurement(label, result, load.connections, records, cpu)
    say(f"{label:<34} {result.requests_per_second:>9,.1f} req/s  p50 {result.p50_ms:6.2f} ms"
        f"  p99 {result.p99_ms:7.2f} ms  non-2xx {result.non_2xx}  socket errors "
        f"{result.socket_errors}  server CPU {measured.cpu_ms_per_request:.2f} ms/req  "
        f"({result.requests:,} requests in {result.seconds:.1f} s)")
    if note:
        say(f"  {note}")
    return measured


class PredictionLogWatch:
    """The predictor's log in PostgreSQL across runs: `settle()`, called when a load ends,
    waits until every answered prediction is a row and says how the log kept up."""

    def __init__(self, url: str, database: str, timeout: float):
        self.url = url
        self.database = database
        self.timeout = timeout
        self.rows_per_second_under_load = 0.0
        self._rows = servers.count_rows(database)
        self._since = time.monotonic()

    def settle(self) -> str:
        load_seconds = time.monotonic() - self._since
        rows_when_load_stopped = servers.count_rows(self.database)
        self.rows_per_second_under_load = (rows_when_load_stopped - self._rows) / load_seconds
        started = time.monotonic()
        while True:
            answered = servers.answered_predictions(self.url)
            rows = servers.count_rows(self.database)
            waited = time.monotonic() - started
            if rows >= answered or waited > self.timeout:
                break
            time.sleep(0.25)
        self._rows, self._since = rows, time.monotonic()
        return (f"logged {rows:,} of {answered:,} answered: under load the log wrote "
                f"{self.rows_per_second_under_load:,.0f} rows/s, then "
                f"{rows - rows_when_load_stopped:,} rows in the {waited:.1f} s after")


def report(results: dict[str, Measurement], logged: tuple[int, int],
           batch_log_rate: float) -> None:
    say(f"\n{'server':<34} {'conns':>5} {'req/s':>9} {'rows/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'non-2xx':>7} {'sock err':>8} {'CPU ms/req':>10}")
    for m in results.values():
        say(f"{m.label:<34} {m.connections:>5} {m.rate:>9,.1f} {m.rows_per_second:>9,.0f} "
            f"{m.wrk.p50_ms:>7.2f} {m.wrk.p99_ms:>7.2f} {m.wrk.non_2xx:>7} "
            f"{m.wrk.socket_errors:>8} {m.cpu_ms_per_request:>10.3f}")

    ceiling, mlflow = results["ceiling"], results["mlflow"]
    on, off = results["log_on"], results["log_off"]
    batch_on, batch_off = results["batch_log_on"], results["batch_log_off"]
    rows_logged, answered = logged
    checks = [
        ("onebox (log on) / ceiling, req/s", f"{on.rate / ceiling.rate:.2f}",
         f">= {CEILING_SHARE_TARGET}", on.rate >= CEILING_SHARE_TARGET * ceiling.rate),
        ("onebox (log on) / mlflow serve, req/s", f"{on.rate / mlflow.rate:.1f}",
         f">= {MLFLOW_MULTIPLE_TARGET:g}", on.rate >= MLFLOW_MULTIPLE_TARGET * mlflow.rate),
        ("onebox (log on) p99", f"{on.wrk.p99_ms:.1f} ms", f"< {P99_TARGET_MS:g} ms",
         on.wrk.p99_ms < P99_TARGET_MS),
        ("batch rows/s (log on)", f"{batch_on.rows_per_second:,.0f}",
         f">= {BATCH_ROWS_TARGET:,}", batch_on.rows_per_second >= BATCH_ROWS_TARGET),
        ("every answered prediction logged", f"{rows_logged:,} of {answered:,}", "all",
         rows_logged == answered),
        ("no non-2xx or socket errors, all runs",
         str(sum(m.wrk.non_2xx + m.wrk.socket_errors for m in results.values())), "0",
         all(m.wrk.clean for m in results.values())),
    ]
    keys_off = [m for k, m in results.items() if k.startswith("keys_off_")]
    keys_on = [m for k, m in results.items() if k.startswith("keys_on_")]
    rate_cost = 1 - statistics.median(m.rate for m in keys_on) / statistics.median(
        m.rate for m in keys_off)
    cpu_cost = statistics.median(m.cpu_ms_per_request for m in keys_on) / statistics.median(
        m.cpu_ms_per_request for m in keys_off) - 1
    checks.append(("API keys' cost on /predict (server CPU/req)", f"{cpu_cost:+.1%}",
                   f"< {AUTH_COST_TARGET:.0%}", cpu_cost < AUTH_COST_TARGET))
    for what, kind in (("single", ""), ("batch", "batch_")):
        binary, number = (statistics.median(m.rate for k, m in results.items()
                                            if re.fullmatch(f"{task}_{kind}[0-9]+", k))
                          for task in ("binary", "number"))
        checks.append((f"a number / a probability, {what} req/s", f"{number / binary:.2f}",
                       f">= {NUMBER_SPEED_TARGET}", number >= NUMBER_SPEED_TARGET * binary))
    # The same by server CPU per request (less sensitive to the machine's other load).
    task_cpu = {(task, kind): statistics.median(
        m.cpu_ms_per_request for k, m in results.items()
        if re.fullmatch(f"{task}_{kind}[0-9]+", k))
        for task in ("binary", "number") for kind in ("", "batch_")}
    say(f"\n{'target':<42} {'measured':>18} {'target':>12}")
    for name, measured, target, passed in checks:
        say(f"{name:<42} {measured:>18} {target:>12}  {'PASS' if passed else 'FAIL'}")
    for what, kind in (("single", ""), ("batch", "batch_")):
        ratio = task_cpu[("number", kind)] / task_cpu[("binary", kind)]
        say(f"{f'a number / a probability, {what} CPU/req':<42} {ratio:>18.2f} "
            f"{'(no target)':>12}")
    say(f"{'batch rows/s (log off)':<42} {batch_off.rows_per_second:>18,.0f} "
        f"{'(no target)':>12}")
    # Rows answered faster than the log writes them wait in the workers' memory.
    say(f"{'log written under batch load, rows/s':<42} {batch_log_rate:>18,.0f} "
        f"{'(no target)':>12}")
    label = f"API keys' cost, req/s (medians of {len(keys_on)})"
    say(f"{label:<42} {rate_cost:>+18.1%} {'(no target)':>12}")
    say(f"{'logging cost, single (log on / log off)':<42} {on.rate / off.rate:>18.2f} "
        f"{'(no target)':>12}")
    say(f"{'logging cost, batch (log on / log off)':<42} "
        f"{batch_on.rate / batch_off.rate:>18.2f} {'(no target)':>12}")
    explain, batch_explain = results["explain"], results["batch_explain"]
    say(f"{'explanation cost, single (server CPU/req)':<42} "
        f"{explain.cpu_ms_per_request / off.cpu_ms_per_request:>17.2f}x {'(no target)':>12}")
    say(f"{'explanation cost, batch (server CPU/row)':<42} "
        f"{batch_explain.cpu_us_per_row / batch_off.cpu_us_per_row:>17.2f}x {'(no target)':>12}")
    say(f"  explained: {explain.cpu_ms_per_request * 1000:,.0f} us per single request "
        f"(plain {off.cpu_ms_per_request * 1000:,.0f}), {batch_explain.cpu_us_per_row:.1f} us "
        f"per batch row (plain {batch_off.cpu_us_per_row:.1f}); "
        f"{explain.rate:,.0f} req/s and {batch_explain.rows_per_second:,.0f} rows/s")
    # Other processes on the machine move req/s a lot from run to run; the server's own
    # CPU per request much less.  The same ratios by CPU, as a cross-check.
    say("\nby server CPU per request (less sensitive to other load on the machine):")
    cpu = {key: m.cpu_ms_per_request for key, m in results.items()}
    say(f"  ceiling / onebox, log on   {cpu['ceiling'] / cpu['log_on']:6.2f}"
        f"   (log off {cpu['ceiling'] / cpu['log_off']:.2f})")
    say(f"  mlflow / onebox, log on    {cpu['mlflow'] / cpu['log_on']:6.1f}"
        f"   (log off {cpu['mlflow'] / cpu['log_off']:.1f})")
    say(f"  batch, log on / log off    {batch_on.cpu_us_per_row:6.1f} / "
        f"{batch_off.cpu_us_per_row:.1f} us per row, so one CPU scores "
        f"{1e6 / batch_on.cpu_us_per_row:,.0f} / {1e6 / batch_off.cpu_us_per_row:,.0f} rows/s")


def _load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
