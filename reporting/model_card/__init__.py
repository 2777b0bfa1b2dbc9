"""A model card per registered version: one HTML page, readable offline, for a binary
model or a number.

Where it lives (the reports index links these):
    REPORTS_DIR/models/<model name>-v<version>.html  the card
    REPORTS_DIR/models/<model name>-v<version>.json  its headline figures, for the index

The train flow writes it after the gate has decided, whatever it decided.  Three rooms:
statistics (the bootstrap, calibration, residuals, TreeSHAP importance), card (what the
card says, per task) with page (its HTML), and publishing (the run artifact, the reports
folder, the version's link).
"""

from core.registry import CARD_TAG
from reporting.model_card.card import (
    CARDS_DIR,
    FRONT_DOOR_REPORTS,
    BinaryHoldout,
    CardInputs,
    ModelCard,
    RegressionHoldout,
    TrainingData,
    build_card,
    card_url,
    summary,
)
from reporting.model_card.page import render_html
from reporting.model_card.publishing import (
    CARD_ARTIFACT,
    CardFiles,
    card_path,
    card_summary_path,
    publish,
    write_card,
)
from reporting.model_card.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    auc_confidence_interval,
    auc_difference_interval,
    bootstrap_aucs,
    rank_auc,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CARDS_DIR", "CARD_ARTIFACT", "CARD_TAG",
    "CONFIDENCE", "FRONT_DOOR_REPORTS", "BinaryHoldout", "CardFiles", "CardInputs",
    "ModelCard", "RegressionHoldout", "TrainingData", "auc_confidence_interval",
    "auc_difference_interval", "bootstrap_aucs", "build_card", "card_path",
    "card_summary_path", "card_url", "publish", "rank_auc", "render_html", "summary",
    "write_card",
]
