"""The `report` flow: the drift report of the newest window, for the reports site
(reporting/report.py writes it and the index)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from core.settings import Settings
from reporting.report import EmptyWindow, report_latest_window


@flow(name="report")
def report(window_rows: int = 1000) -> dict[str, Any]:
    """Write the drift report of the newest `window_rows` predictions and rebuild the index.

    A champion that has served nothing yet (just promoted, or a new stack) has no window:
    the run completes and says so, as drift-check does, instead of failing on schedule.
    """
    logger = get_run_logger()
    try:
        files = report_latest_window(Settings.from_env(), window_rows)
    except EmptyWindow as empty:
        logger.info("nothing to report: %s", empty)
        return {"decision": "no-data", "reason": str(empty)}
    logger.info("report %s: drift share %.2f, drifted %s", files.html,
                files.summary_data["drift_share"],
                files.summary_data["drifted_features"] or "none")
    return {"decision": "reported", "report": str(files.html), "index": str(files.index),
            "drift_share": files.summary_data["drift_share"],
            "drifted_features": files.summary_data["drifted_features"]}
