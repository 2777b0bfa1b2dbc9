"""`make demo`: the whole loop on embedded defaults, end to end, on one machine.

Generate data -> train (search, register, gate) -> start the predictor under
gunicorn -> send a normal phase of traffic, then a drifted one -> measure the
drift of each phase -> write the drift report and index -> stop the predictor
-> print a summary.  Everything lives under ONEBOX_HOME (./.onebox); nothing is
left running.  `--business flights` (make demo DEMO=flights) runs it on flight fares
(simulation/demo_tables.py names each demo business's settings and drifted phase).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

from core import registry
from core.schema import Schema
from core.settings import Settings
from core.store import PredictionStore
from core.task import task_of
from operations import processes
from orchestration.train import train
from reporting.report import window_from_log, write_report
from simulation.demo_tables import business, by_short_name, demo_table
from simulation.traffic import TrafficStats, send_traffic


@dataclass
class Phase:
    name: str
    stats: TrafficStats
    drift_share: float = 0.0
    drifted_features: tuple[str, ...] = ()
    # The task's figures on the phase's labelled predictions (AUC..., or RMSE, MAE and the
    # intervals' coverage), and those estimated without labels (a binary model's CBPE).
    live: dict[str, float | None] | None = None
    estimated: dict[str, float | None] | None = None
    report: str = ""


def _wait_for_log(store: PredictionStore, expected: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := store.count()) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def run_demo(rows: int, phase_rows: int, trials: int, port: int | None) -> int:
    settings = Settings.from_env()
    schema = Schema.load(settings.schema_path)
    started = time.monotonic()

    # The embedded stack is set up here, as compose's setup step sets up its own: the
    # prediction log's tables migrated to this version's, before anything reads or writes.
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    store.migrate()

    demo = business(schema)
    print(f"== 1/5 data: {rows} generated rows of {schema.name} -> {settings.data_path}",
          flush=True)
    settings.data_path.parent.mkdir(parents=True, exist_ok=True)
    demo_table(schema, rows, settings.seed).to_csv(settings.data_path, index=False)

    print(f"== 2/5 train: {trials} trials, register, gate", flush=True)
    result = train(n_trials=trials, data_path=str(settings.data_path))

    port = port or (9696 if processes.port_is_free(9696) else processes.free_port())
    url = f"http://127.0.0.1:{port}"
    log_path = settings.home / "logs" / "predictor.log"
    print(f"== 3/5 serve: gunicorn on {url} (log: {log_path})", flush=True)
    logged_before = store.count()
    predictor = processes.start_predictor(port, {}, log_path)
    phases: list[Phase] = []
    try:
        health = processes.wait_until_healthy(f"{url}/health", predictor)
        print(f"   serving {health['model']['name']} v{health['model']['version']}", flush=True)
        assert demo.demo_drift is not None
        for name, seed in (("normal", settings.seed + 1), ("drifted", settings.seed + 2)):
            print(f"== 4/5 traffic: {phase_rows} requests, {name} phase", flush=True)
            frame = (demo_table(schema, phase_rows, seed) if name == "normal"
                     else demo.demo_drift(phase_rows, seed, schema))
            phases.append(Phase(name, send_traffic(url, frame, schema, send_feedback=True)))
    finally:
        processes.stop(predictor)

    print("== 5/5 drift and report", flush=True)
    client = registry.connect(settings)
    champion = registry.load_champion(client, settings)
    if champion is None:
        raise RuntimeError("training left no @champion to report against")
    expected = logged_before + sum(p.stats.predictions for p in phases)
    logged = _wait_for_log(store, expected)
    # The log is in time order: the last phase's rows are the newest.
    offset = 0
    for phase in reversed(phases):
        window = store.recent(phase.stats.predictions + offset).head(phase.stats.predictions)
        offset += phase.stats.predictions
        files = write_report(window_from_log(window, champion), champion, settings.reports_dir,
                             title=f"Demo: {phase.name} phase")
        phase.drift_share = files.summary_data["drift_share"]
        phase.drifted_features = tuple(files.summary_data["drifted_features"])
        phase.live = files.summary_data["quality"]
        phase.estimated = files.summary_data["estimated"]
        phase.report = str(files.html)
    store.dispose()

    failed = sum(p.stats.failed for p in phases)
    print("\n================ onebox demo summary ================")
    print(f"model            {result['model_name']} v{result['version']} "
          f"({'promoted to @champion' if result['promoted'] else 'not promoted'}: "
          f"{result['gate']['reason']})")
    metric = task_of(schema).gate_metric  # AUC, or the number's RMSE or MAE
    holdout = result["holdout"]
    extras = ([f"threshold {result['threshold']:.2f}"] if result["threshold"] is not None
              else []) + ([f"{holdout['interval_level']:.0%} interval covers "
                           f"{holdout['interval_coverage']:.1%}, mean width "
                           f"{holdout['interval_width']:,.0f}"]
                          if "interval_coverage" in holdout else [])
    said = f" ({'; '.join(extras)})" if extras else ""
    print(f"holdout {metric.label:<8} {holdout[metric.name]:,.4g}{said}")
    for phase in phases:
        s = phase.stats
        live, estimated = phase.live or {}, phase.estimated or {}
        coverage = ("" if live.get("interval_coverage") is None
                    else f"; intervals held {live['interval_coverage']:.1%}")
        print(f"{phase.name:<8} phase   {s.requests} requests: {s.ok} served, "
              f"{s.client_errors} refused, {s.failed} failed; feedback {s.feedback_sent}; "
              f"drift share {phase.drift_share:.2f} "
              f"({', '.join(phase.drifted_features) or 'no feature drifted'}); "
              f"{metric.label} estimated {_figure(estimated.get(metric.name))}, "
              f"live {_figure(live.get(metric.name))}{coverage}")
    print(f"prediction log   {logged - logged_before} of {expected - logged_before} "
          f"predictions logged ({settings.prediction_store_shown})")
    print(f"reports          {settings.reports_dir / 'index.html'}")
    print(f"elapsed          {time.monotonic() - started:.0f} s")
    # Nothing is left running; the command that serves every page of it comes last.
    named = "" if demo.short_name == business(Schema.load()).short_name else (
        f" DEMO={demo.short_name}")
    print(f"pages            make serve{named}  (then open http://127.0.0.1:8080/: the try-it "
          "page, the reports and cards, MLflow's UI; Ctrl-C stops it)")
    return 0 if failed == 0 and logged >= expected else 1


def _figure(value: float | None) -> str:
    """An AUC in three decimals; an error in four significant digits, whole from 1,000
    on (`,.4g` wrote 12,345 INR as 1.234e+04)."""
    if value is None:
        return "n/a"
    if abs(value) <= 1:
        return f"{value:.3f}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="training rows to generate")
    parser.add_argument("--phase-rows", type=int, default=1_500,
                        help="requests in each traffic phase")
    parser.add_argument("--trials", type=int, default=None, help="Optuna trials (N_TRIALS)")
    parser.add_argument("--port", type=int, default=None, help="predictor port (9696)")
    parser.add_argument("--business", default=None,
                        help="a demo business (churn, flights); default: SCHEMA_PATH's")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.business:
        os.environ.update(by_short_name(args.business).settings())
        # Its own table under ONEBOX_HOME, never a DATA_PATH of the shell's (the demo
        # writes its generated table there).
        os.environ.pop("DATA_PATH", None)
    trials = args.trials or Settings.from_env().n_trials
    sys.exit(run_demo(args.rows, args.phase_rows, trials, args.port))


if __name__ == "__main__":
    main()
