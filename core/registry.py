"""The model registry as the services see it: which version is champion, and
everything that travels with a version (the pipeline, its schema, its decision
threshold and the reference sample of its training data).

Training writes these (orchestration); the predictor, the drift exporter and
the reports read them through this module, so the layout is defined once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from core.calibration import Calibration
from core.intervals import Interval
from core.loss_estimation import LossEstimator
from core.schema import Schema, model_frame
from core.settings import Settings
from core.task import (  # noqa: F401 (the keys are read as registry.*_KEY too)
    CALIBRATION_KEY,
    INTERVAL_KEY,
    THRESHOLD_KEY,
    ServingFit,
    Task,
    task_of,
)

CHAMPION = "champion"
PREVIOUS = "previous"
# Keys of the model's MLmodel `metadata`.
SCHEMA_KEY = "onebox_schema"
# What travels with the version is under core.task's CALIBRATION_KEY, THRESHOLD_KEY and
# INTERVAL_KEY (ServingFit.metadata: Platt scaling, absent on older versions; the decision
# threshold; a number's interval).
# The version's AUC on the gate's holdout: what the monitoring's estimate is held to.
HOLDOUT_AUC_KEY = "onebox_holdout_auc"
# Every holdout figure of the version (JSON: {"rmse": ..., "mae": ...}); absent on versions
# from before regression, whose one figure is HOLDOUT_AUC_KEY.
HOLDOUT_METRICS_KEY = "onebox_holdout_metrics"
# How the reference sample's `prediction` column was scored: "holdout" (the served model
# on the gate's holdout rows, the other rows' left empty), "out_of_fold" (versions trained
# before that: each row by a fold model that did not train on it), or, absent, in-sample --
# more extreme than any new customer's, so its drift must not raise the alarm.
REFERENCE_PREDICTIONS_KEY = "onebox_reference_predictions"
HOLDOUT = "holdout"
OUT_OF_FOLD = "out_of_fold"
# The reference sample is saved inside the model (MLflow `extra_files`), so it can
# never be separated from the version it describes.
REFERENCE_FILE = "reference.parquet"
REFERENCE_RELATIVE_PATH = Path("extra_files") / REFERENCE_FILE
PREDICTION_COLUMN = "prediction"


def connect(settings: Settings) -> MlflowClient:
    """A client of the configured tracking store and registry.  Nothing process-wide is
    set: everything here takes the client (or its URI), so two stores can be used side
    by side in one process.  The one MLflow API that needs the process-wide URI (the
    fluent `log_model`) is the train flow's, which sets it at its start."""
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking server does not answer."""


def require_reachable(settings: Settings, timeout: float = 5.0) -> None:
    """Raise RegistryUnavailable, naming the address and the error, when the tracking
    server does not answer its /health (a local file or database store always does).
    MLflow's own client would instead retry each call for minutes and then fail deep
    inside whatever step called it."""
    uri = settings.mlflow_tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    auth = None
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"],
                os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    try:
        answer = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout, auth=auth,
                              verify=verify)
    except requests.RequestException as exc:
        raise RegistryUnavailable(f"MLflow at {uri} does not answer ({type(exc).__name__})"
                                  ) from exc
    if answer.status_code != 200:
        raise RegistryUnavailable(f"MLflow at {uri} answers /health with {answer.status_code}")


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding `alias`, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass(frozen=True)
class LoadedModel:
    """A model version ready to use: the fitted pipeline and what travels with it."""

    name: str
    version: str
    path: Path
    pipeline: Any
    schema: Schema
    # A binary model's decision threshold (None: a regression model has none).
    threshold: float | None
    calibration: Calibration = Calibration()
    holdout_auc: float | None = None
    # A number's prediction interval (None: a binary model, or a version from before).
    interval: Interval | None = None
    reference_out_of_sample: bool = False
    holdout_metrics: dict[str, float] = field(default_factory=dict)

    @cached_property
    def serving(self) -> ServingFit:
        """What the version carries, as the task answers with it."""
        return ServingFit(self.calibration, self.threshold, self.interval)

    @cached_property
    def task(self) -> Task:
        # Asked on every request (the answers, the metrics): built once per version.
        return task_of(self.schema)

    def predict(self, frame: pd.DataFrame) -> Any:
        """The served prediction: the calibrated probability of a binary model, the number
        of a regression model (its calibration is the identity)."""
        return self.calibration.apply(self.task.predict(self.pipeline, frame))

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        """The served probability: the pipeline's, calibrated (the decision threshold and
        the monitoring's estimates are on this scale)."""
        return self.calibration.apply(self.predict_raw_proba(frame))

    def predict_raw_proba(self, frame: pd.DataFrame) -> Any:
        """The pipeline's own probability, before calibration."""
        return self.pipeline.predict_proba(frame)[:, 1]

    def reference(self) -> pd.DataFrame:
        """The reference sample of the training data (features, target and `prediction`)."""
        return pd.read_parquet(self.path / REFERENCE_RELATIVE_PATH)

    @cached_property
    def loss_estimator(self) -> LossEstimator | None:
        """A number's models of its error (DLE), read when first asked for: only the
        monitoring uses them, never the predictor.  None: a binary model, or a version
        from before them."""
        return LossEstimator.load(self.path / REFERENCE_RELATIVE_PATH.parent)

    def encode(self, frame: pd.DataFrame) -> Any:
        """The features of `frame` as the pipeline's estimator sees them (its
        preprocessing step's output)."""
        return self.pipeline[:-1].transform(model_frame(self.schema, frame))


def download_version(client: MlflowClient, name: str, version: str, cache_dir: Path) -> Path:
    """Copy a version's model files from `client`'s registry to `cache_dir/name/version`
    (once) and return the folder."""
    target = cache_dir / name / str(version)
    if (target / "MLmodel").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the target and rename, so a crash never leaves half a model
    # where a later start would take it for a complete one.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        # Where the version's files are, asked of this client's registry: MLflow resolves a
        # `models:/` URI through its process-wide registry URI, whatever client asks.
        source = client.get_model_version_download_uri(name, str(version))
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(staging), tracking_uri=client.tracking_uri)
        Path(downloaded).rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        # Another process (a sibling gunicorn worker) finished the same download first.
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "MLmodel").exists():
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_local(path: Path, *, name: str, version: str) -> LoadedModel:
    """Load a downloaded model folder."""
    meta = Model.load(str(path / "MLmodel")).metadata or {}
    if SCHEMA_KEY not in meta:
        raise ValueError(f"{path}: the model carries no {SCHEMA_KEY!r} metadata")
    schema_raw = meta[SCHEMA_KEY]
    schema = Schema.from_dict(json.loads(schema_raw) if isinstance(schema_raw, str)
                              else schema_raw)
    pipeline = mlflow.sklearn.load_model(str(path))
    serving = ServingFit.from_metadata(meta, task_of(schema).default_threshold)
    metrics = meta.get(HOLDOUT_METRICS_KEY) or {}
    return LoadedModel(
        name=name,
        version=str(version),
        path=path,
        pipeline=pipeline,
        schema=schema,
        threshold=serving.threshold,
        calibration=serving.calibration,
        interval=serving.interval,
        holdout_auc=float(meta[HOLDOUT_AUC_KEY]) if HOLDOUT_AUC_KEY in meta else None,
        reference_out_of_sample=meta.get(REFERENCE_PREDICTIONS_KEY) in (HOLDOUT, OUT_OF_FOLD),
        holdout_metrics={k: float(v) for k, v in (json.loads(metrics) if isinstance(metrics, str)
                                                  else metrics).items()},
    )


def load_version(client: MlflowClient, name: str, version: str, cache_dir: Path,
                 ) -> LoadedModel:
    return load_local(download_version(client, name, version, cache_dir), name=name,
                      version=version)


class OtherBusiness(ValueError):
    """A registered model's versions predict another target (or task) than the one at hand:
    one registered model per business, so the gate and a rollback never compare a regressor
    with a classifier."""


# A version's tag naming its business (business_of), set when the train flow registers it.
BUSINESS_TAG = "onebox.business"


def business_of(schema: Schema) -> str:
    """What versions of one registered model share: the task and the target's name."""
    return f"{schema.task} {schema.target!r}"


def require_same_business(client: MlflowClient, version: ModelVersion, schema: Schema,
                          what: str, cache_dir: Path) -> None:
    """OtherBusiness, saying what to do, unless `version` (of a registered model) predicts
    what `schema` does; `what` names the other side ("this schema").  Read from the
    version's BUSINESS_TAG; a version registered before the tag is loaded to read its
    schema."""
    held = version.tags.get(BUSINESS_TAG) if version.tags else None
    if held is None:
        held = business_of(load_version(client, version.name, str(version.version),
                                        cache_dir).schema)
    if held != business_of(schema):
        raise OtherBusiness(
            f"registered model {version.name!r} holds {held} models (v{version.version}); "
            f"{what} predicts {business_of(schema)}: give each business a registered model "
            "of its own (MODEL_NAME)")


def load_champion(client: MlflowClient, settings: Settings) -> LoadedModel | None:
    """The current champion of the configured model, or None when there is none yet."""
    champion = version_by_alias(client, settings.model_name, CHAMPION)
    if champion is None:
        return None
    return load_version(client, settings.model_name, champion.version,
                        settings.model_cache_dir)


# --- writes --------------------------------------------------------------------------
# After MLflow's log_model registers a version (the train flow), these are the only writes
# onebox makes to the registry: what a version predicts, the gate's record and the aliases
# it moves, a rollback's swap, the model card's link.

# The model-version tag that points at the version's model card (under the front door).
CARD_TAG = "onebox.model_card"


def tag_business(client: MlflowClient, name: str, version: str, schema: Schema) -> None:
    """What the version predicts, read by a rollback and the train flow without
    downloading it (one registered model per business)."""
    client.set_model_version_tag(name, version, BUSINESS_TAG, business_of(schema))


def record_gate(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    """The gate's decision and its reasons, on the candidate version."""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def promote(client: MlflowClient, name: str, candidate: str, champion: str | None) -> None:
    """@champion to `candidate`; the old champion, if any, keeps @previous (so a rollback
    is one swap)."""
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, champion)
    client.set_registered_model_alias(name, CHAMPION, candidate)


def roll_back(client: MlflowClient, name: str, champion: str, previous: str) -> None:
    """Swap @champion and @previous, and say on the restored version where it came from
    (rolling back again rolls forward)."""
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_alias(name, PREVIOUS, champion)
    client.set_model_version_tag(name, previous, "rollback.from", champion)


def link_card(client: MlflowClient, name: str, version: str, url: str,
              description: str) -> None:
    """The version's one-line description (markdown, on its MLflow page) and CARD_TAG."""
    client.update_model_version(name, version, description=description)
    client.set_model_version_tag(name, version, CARD_TAG, url)
