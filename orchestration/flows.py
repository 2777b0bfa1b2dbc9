"""The scheduled flows besides `train`: the drift report and the drift check.

`drift-check` looks at the newest window of logged predictions and takes the
drift exporter's decision (monitoring.drift `drift_alarm`: a feature or the
predicted probability drifted, or the live AUC fell below its floor): when the
alarm rises it starts a run of the `train` deployment (and says why, in its
logs, in its return value and on the training run); otherwise it does nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from core import registry
from core.settings import Settings
from core.store import PredictionStore
from monitoring.drift import DriftPolicy, compute_drift, drift_alarm
from monitoring.quality import live_quality
from reporting.report import report_latest_window, window_from_log

TRAIN_DEPLOYMENT = "train/train"


@flow(name="report")
def report(window_rows: int = 1000) -> dict[str, Any]:
    """Write the drift report of the newest `window_rows` predictions and rebuild the index."""
    files = report_latest_window(Settings.from_env(), window_rows)
    get_run_logger().info("report %s: drift share %.2f, drifted %s", files.html,
                          files.summary_data["drift_share"],
                          files.summary_data["drifted_features"] or "none")
    return {"report": str(files.html), "index": str(files.index),
            "drift_share": files.summary_data["drift_share"],
            "drifted_features": files.summary_data["drifted_features"]}


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10)
def measure_window(window_rows: int, policy: DriftPolicy) -> dict[str, Any]:
    """Drift, live quality and the alarm of the newest window, against the champion's reference."""
    settings = Settings.from_env()
    client = registry.connect(settings)
    champion = registry.load_champion(client, settings)
    if champion is None:
        raise RuntimeError(f"no @{registry.CHAMPION} for {settings.model_name}: train first")
    store = PredictionStore(settings.prediction_store_url.get_secret_value())
    try:
        store.create_schema()
        window = store.recent(window_rows)
    finally:
        store.dispose()
    if window.empty:
        return {"rows": 0, "drift_detected": False, "drift_share": None,
                "drifted_features": [], "drifted_relations": [], "quality": None, "reason": None,
                "model_version": champion.version}
    drift = compute_drift(champion.reference(), window_from_log(window), champion.schema, policy)
    quality = live_quality(window)
    alarm = drift_alarm(drift, quality, policy)
    return {"rows": len(window), "drift_detected": alarm.detected, "reason": alarm.reason,
            "drift_share": drift.share, "drifted_features": drift.drifted_features,
            "drifted_relations": drift.drifted_relations,
            "prediction_drifted": drift.prediction_drifted,
            "quality": quality.as_dict(), "model_version": champion.version}


@flow(name="drift-check")
def drift_check(
    window_rows: int = 1000,
    drift_share_threshold: float | None = None,
    min_auc: float | None = None,
    min_labels: int | None = None,
    train_deployment: str = TRAIN_DEPLOYMENT,
) -> dict[str, Any]:
    """Start a `train` run when the drift alarm rises on the newest window; else do nothing.

    Thresholds left unset come from the settings (DRIFT_SHARE_THRESHOLD,
    QUALITY_MIN_AUC, QUALITY_MIN_LABELS; DRIFT_FALSE_ALARM_RATE), as the exporter's do.
    """
    logger = get_run_logger()
    policy = DriftPolicy.from_settings(Settings.from_env()).with_overrides(
        share_threshold=drift_share_threshold, min_auc=min_auc, min_labels=min_labels)
    measured = measure_window(window_rows, policy)
    if not measured["rows"]:
        logger.info("no logged predictions yet: nothing to check")
        return {"decision": "no-data", **measured}
    reason = measured["reason"]
    if not measured["drift_detected"]:
        logger.info("window of %d rows is fine (drift share %.2f, quality %s): no retraining",
                    measured["rows"], measured["drift_share"], measured["quality"])
        return {"decision": "ok", **measured}
    logger.warning("retraining: %s", reason)
    # timeout=0: start the run and return; the worker runs it as its own flow run.
    run = run_deployment(train_deployment, parameters={"trigger_reason": reason}, timeout=0,
                         tags=["triggered-by-drift-check"])
    logger.info("started %s as flow run %s", train_deployment, run.id)
    return {"decision": "retrain", "reason": reason, "train_flow_run_id": str(run.id),
            **measured}
