"""Where a model card goes: the run's artifacts, the reports folder, the version's link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import registry
from reporting.atomic import atomic_write_text
from reporting.model_card.card import CARDS_DIR, ModelCard, card_stem, summary
from reporting.model_card.page import render_html, score_format
from reporting.model_card.statistics import CONFIDENCE

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The run artifact's name (the version's tag pointing at the card: registry.CARD_TAG).
CARD_ARTIFACT = "model_card.html"


def card_path(reports_dir: Path, model_name: str, version: str) -> Path:
    return reports_dir / CARDS_DIR / f"{card_stem(model_name, version)}.html"


def card_summary_path(reports_dir: Path, model_name: str, version: str) -> Path:
    return reports_dir / CARDS_DIR / f"{card_stem(model_name, version)}.json"


@dataclass(frozen=True)
class CardFiles:
    html: Path
    summary: Path
    url: str


def write_card(card: ModelCard, page: str, reports_dir: Path) -> CardFiles:
    """Write the page, then its summary (an index lists a card once its summary exists, so
    it never links a page not there yet)."""
    inputs = card.inputs
    html_file = card_path(reports_dir, inputs.model_name, inputs.version)
    summary_file = card_summary_path(reports_dir, inputs.model_name, inputs.version)
    html_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(html_file, page)
    atomic_write_text(summary_file, json.dumps(summary(card), indent=2))
    return CardFiles(html_file, summary_file, card.url)


def log_on_run(client: MlflowClient, card: ModelCard, page: str) -> None:
    """Keep the page with the training run's artifacts (it travels with MLflow backups)."""
    client.log_text(card.inputs.run_id, page, CARD_ARTIFACT)


def link_from_version(client: MlflowClient, card: ModelCard) -> None:
    """Point the model version at the card under the front door: a one-line description
    (markdown, shown on the version's page) and a tag scripts can read."""
    inputs, evidence = card.inputs, card.evidence
    low, high = evidence.candidate_ci
    fmt = score_format(evidence.metric.name)
    description = (f"Holdout {evidence.metric.label} {fmt.format(evidence.candidate)} "
                   f"({int(CONFIDENCE * 100)}% CI {fmt.format(low)}–{fmt.format(high)}). "
                   f"Model card: [{card.url}]({card.url})")
    registry.link_card(client, inputs.model_name, inputs.version, card.url, description)


def publish(card: ModelCard, reports_dir: Path, client: MlflowClient) -> CardFiles:
    """Render the card once; log it on the run, write it to the reports folder, link it.

    The run artifact comes first: it needs no reports folder, so a version whose folder
    cannot be written still has its card in MLflow.  The version's link comes last, so
    it never points at a page that was not written.
    """
    page = render_html(card)
    log_on_run(client, card, page)
    files = write_card(card, page, reports_dir)
    link_from_version(client, card)
    return files
