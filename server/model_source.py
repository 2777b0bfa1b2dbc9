"""Which model the predictor serves: `models:/<name>@champion`, with the last good
version kept on local disk so the predictor starts and serves while MLflow is away.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from core import registry
from core.registry import LoadedModel
from core.settings import Settings

log = logging.getLogger(__name__)

LAST_GOOD_FILE = "LAST_GOOD"


class NoModelAvailable(RuntimeError):
    """Neither the registry nor the local cache has a model to serve."""


@dataclass(frozen=True)
class ServedModel:
    model: LoadedModel
    source: str  # "registry" or "local-cache"


def _last_good_path(settings: Settings) -> Path:
    return settings.model_cache_dir / settings.model_name / LAST_GOOD_FILE


def _remember_last_good(settings: Settings, version: str) -> None:
    marker = _last_good_path(settings)
    # Write-then-rename: sibling workers may write at once, a reader never sees half a file.
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}")
    tmp.write_text(version)
    os.replace(tmp, marker)


def load_served_model(settings: Settings) -> ServedModel:
    """The champion from the registry; if the registry cannot be reached or has no champion,
    the last good version from the local cache."""
    try:
        client = registry.connect(settings)
        champion = registry.load_champion(client, settings)
    except Exception as exc:  # any failure to reach MLflow falls back to the local copy
        log.warning("model registry unavailable (%s); trying the local cache", exc)
        champion = None
    if champion is not None:
        _remember_last_good(settings, champion.version)
        return ServedModel(champion, "registry")
    marker = _last_good_path(settings)
    if not marker.exists():
        raise NoModelAvailable(
            f"no @{registry.CHAMPION} for model {settings.model_name!r} at "
            f"{settings.mlflow_tracking_uri} and no cached copy in {settings.model_cache_dir}; "
            "train one first (make train)"
        )
    version = marker.read_text().strip()
    path = settings.model_cache_dir / settings.model_name / version
    log.warning("serving cached %s v%s from %s", settings.model_name, version, path)
    return ServedModel(registry.load_local(path, name=settings.model_name, version=version),
                       "local-cache")
