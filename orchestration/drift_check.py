"""The `drift-check` flow.

It assesses the window the drift exporter assesses (monitoring.window) and takes the
same decision (monitoring.drift `drift_alarm`: a feature or the predicted probability
drifted, or the live AUC fell below its floor): when the alarm rises it starts a run of
the `train` deployment (and says why, in its logs, in its return value and on the
training run); otherwise it does nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from core.settings import Settings
from monitoring.drift import DriftPolicy
from monitoring.window import assess, read_champion_window
from orchestration.retries import unless_not_migrated

TRAIN_DEPLOYMENT = "train/train"


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10,
      retry_condition_fn=unless_not_migrated)
def measure_window(window_rows: int, policy: DriftPolicy) -> dict[str, Any]:
    """The exporter's assessment of the newest window (monitoring.window): the same rows
    (the champion's newest `window_rows` predictions), the same decision."""
    settings = Settings.from_env()
    champion, window = read_champion_window(settings, window_rows)
    return assess(champion, window, policy, settings.estimated_auc_margin).summary()


@flow(name="drift-check")
def drift_check(
    window_rows: int | None = None,
    drift_share_threshold: float | None = None,
    min_auc: float | None = None,
    min_labels: int | None = None,
    train_deployment: str = TRAIN_DEPLOYMENT,
) -> dict[str, Any]:
    """Start a `train` run when the drift alarm rises on the newest window; else do nothing.

    What is left unset comes from the settings, as the exporter's does: the window
    (DRIFT_WINDOW_ROWS of the champion's newest predictions) and the thresholds
    (DRIFT_SHARE_THRESHOLD, QUALITY_MIN_AUC, QUALITY_MIN_LABELS; DRIFT_FALSE_ALARM_RATE).
    """
    logger = get_run_logger()
    settings = Settings.from_env()
    policy = DriftPolicy.from_settings(settings).with_overrides(
        share_threshold=drift_share_threshold, min_auc=min_auc, min_labels=min_labels)
    measured = measure_window(window_rows or settings.drift_window_rows, policy)
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
