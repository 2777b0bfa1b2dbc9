"""Which model the predictor serves, and following it as it moves.

The predictor serves `models:/<name>@champion`.  Each gunicorn worker checks the
alias every MODEL_POLL_SECONDS in a background thread; when it has moved, the
new version is downloaded, loaded and warmed up beside the old one, and only
then swapped in with one reference assignment.  A request reads that reference
once, so it is scored and validated by one version from start to end, and no
request waits for or fails because of a swap.

The last good version stays on local disk (MODEL_CACHE_DIR), so a predictor
starts and serves while MLflow is unreachable; it says so on /health, and the
poller moves it back to the registry's champion once MLflow answers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import registry
from core.registry import LoadedModel
from core.schema import model_frame, typical_record
from core.settings import Settings
from server.fast_scorer import FastScorer

log = logging.getLogger(__name__)

LAST_GOOD_FILE = "LAST_GOOD"
FROM_REGISTRY = "registry"
FROM_LOCAL_CACHE = "local-cache"


class NotExplainable(RuntimeError):
    """The served pipeline is not the shape whose features the scorer can attribute."""


class NoModelAvailable(RuntimeError):
    """Neither the registry nor the local cache has a model to serve."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version, ready to score validated records."""

    model: LoadedModel
    source: str
    scorer: FastScorer | None = None
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def prepare(cls, model: LoadedModel, source: str) -> ServedModel:
        served = cls(model, source, FastScorer.from_pipeline(model.pipeline, model.schema))
        if served.scorer is None:
            log.warning("%s v%s: pipeline shape not recognised; scoring through sklearn",
                        model.name, model.version)
        return served

    @property
    def version(self) -> str:
        return self.model.version

    def predict(self, records: Sequence[dict[str, Any]],
                columns: dict[str, Any] | None = None) -> np.ndarray:
        """The served predictions: calibrated probabilities, or numbers (core.task)."""
        if self.scorer is not None:
            return self.model.calibration.apply(self.scorer.predict(records, columns))
        return np.asarray(self.model.predict(model_frame(self.model.schema, records)))

    def explain(self, records: Sequence[dict[str, Any]],
                columns: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Each record's score split by feature, in the schema's feature order."""
        if self.scorer is None:
            raise NotExplainable(f"{self.model.name} v{self.version}: this pipeline's "
                                 "features cannot be attributed (not the shape onebox trains)")
        explanations = self.scorer.explain(records, columns).calibrated(self.model.calibration)
        return explanations.as_dicts(self.model.schema.feature_names,
                                     self.model.task.explanation_unit)

    @cached_property
    def typical(self) -> dict[str, Any]:
        """A typical record of the version's reference sample: the try-it page's defaults."""
        return typical_record(self.model.schema, self.model.reference())

    def warm_up(self) -> None:
        """Score the model's own input example once, so the first real request is not slower."""
        reference = self.model.reference().head(2)
        records = [{name: _python_value(row[name]) for name in self.model.schema.feature_names}
                   for _, row in reference.iterrows()]
        self.predict(records)


def _python_value(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _last_good_path(settings: Settings) -> Path:
    return settings.model_cache_dir / settings.model_name / LAST_GOOD_FILE


def _remember_last_good(settings: Settings, version: str) -> None:
    marker = _last_good_path(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: sibling workers may write at once, a reader never sees half a file.
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}")
    tmp.write_text(version)
    os.replace(tmp, marker)


def _load_from_cache(settings: Settings) -> ServedModel:
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
    model = registry.load_local(path, name=settings.model_name, version=version)
    return ServedModel.prepare(model, FROM_LOCAL_CACHE)


class ModelFollower:
    """Holds the served model and follows the registry's @champion."""

    def __init__(self, settings: Settings, *, start_polling: bool = True):
        self.settings = settings
        self.client = registry.connect(settings)
        self.last_check: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self.current = self._initial()
        self._thread: threading.Thread | None = None
        if start_polling:
            self._thread = threading.Thread(target=self._poll, name="model-follower",
                                            daemon=True)
            self._thread.start()

    def _initial(self) -> ServedModel:
        try:
            served = self._load_champion()
        except Exception as exc:  # MLflow away (any transport error): fall back to the disk copy
            log.warning("model registry unavailable (%s); trying the local cache", exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            served = None
        return served or _load_from_cache(self.settings)

    def _load_champion(self) -> ServedModel | None:
        champion = registry.version_by_alias(self.client, self.settings.model_name,
                                             registry.CHAMPION)
        self.last_check = time.time()
        if champion is None:
            return None
        model = registry.load_version(self.client, self.settings.model_name,
                                      str(champion.version), self.settings.model_cache_dir)
        served = ServedModel.prepare(model, FROM_REGISTRY)
        served.warm_up()
        _remember_last_good(self.settings, served.version)
        self.last_error = None
        return served

    def check_now(self) -> bool:
        """Look at the alias once; swap if it moved.  Returns True when the model changed."""
        champion = registry.version_by_alias(self.client, self.settings.model_name,
                                             registry.CHAMPION)
        self.last_check = time.time()
        self.last_error = None
        if champion is None:
            return False
        current = self.current
        if str(champion.version) == current.version:
            if current.source != FROM_REGISTRY:  # MLflow is back: same model, now confirmed
                self.current = ServedModel(current.model, FROM_REGISTRY, current.scorer,
                                           current.loaded_at)
            return False
        served = self._load_champion()
        if served is None:
            return False
        self.current = served  # the swap: one reference assignment
        log.info("now serving %s v%s (was v%s)", served.model.name, served.version,
                 current.version)
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.model_poll_seconds):
            try:
                self.check_now()
            except Exception as exc:  # keep serving the current model; say why on /health
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("champion check failed (%s); still serving v%s", exc,
                            self.current.version)

    def close(self) -> None:
        self._stop.set()
