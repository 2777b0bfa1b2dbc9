"""One settings object per process, read from the environment once at start.

Every variable is documented in `.env.local`.  On the embedded path (no Docker)
everything defaults to files under `ONEBOX_HOME` (`./.onebox`): an SQLite MLflow
store, an SQLite prediction log, local folders for data, reports and the model
cache.  In the compose stack the same variables point at the real servers.

Typed with pydantic-settings: a bad value stops the process at start with a message
naming the variable.  Secrets (the prediction log's URL, which holds its password, and
the id key) are `SecretStr`: a repr, a log line or an error shows `**********`, and only
the code that connects reads them (`.get_secret_value()`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.api_keys import ApiKey, KeySpecError, parse_keys
from core.schema import DEFAULT_SCHEMA_PATH

PLACEHOLDER_MARKERS = ("change-me", "changeme")

# The drift alarm's defaults (monitoring.drift reads them too, so a caller without
# settings gets the same decision).  Why these numbers: docs/monitoring.md, "Drift alarm".
DEFAULT_DRIFT_FALSE_ALARM_RATE = 0.005
DEFAULT_DRIFT_SHARE_THRESHOLD = 0.0
DEFAULT_QUALITY_MIN_AUC = 0.65
DEFAULT_QUALITY_MIN_LABELS = 200
# A regression model's live error (its gate metric, RMSE or MAE) this many times its
# holdout error, on QUALITY_MIN_LABELS labels, raises the alarm.
DEFAULT_QUALITY_MAX_ERROR_RATIO = 1.25
# Counts only for versions whose reference predictions are out of fold (core.registry).
DEFAULT_PREDICTION_DRIFT_ALARM = True
# EstimatedQualityLow: the label-free AUC estimate this far below the gate's holdout AUC.
DEFAULT_ESTIMATED_AUC_MARGIN = 0.05


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _env(name: str, default: Any = ..., **constraints: Any) -> Any:
    return Field(default, validation_alias=name, **constraints)


def _store_url(url: SecretStr) -> SecretStr:
    # Users write libpq-style DSNs; SQLAlchemy wants the driver named.
    raw = url.get_secret_value()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://"):]
    if raw.startswith("postgresql://"):
        raw = "postgresql+psycopg2://" + raw[len("postgresql://"):]
    if not (raw.startswith("sqlite:///") or raw.startswith("postgresql+psycopg2://")):
        raise ValueError("must be sqlite:///PATH or postgresql://USER:PASS@HOST/DB")
    return SecretStr(raw)


Fraction = Annotated[float, Field(ge=0, le=1)]


class Settings(BaseSettings):
    """The settings of one onebox process (`Settings.from_env()`)."""

    model_config = SettingsConfigDict(frozen=True, arbitrary_types_allowed=True,
                                      hide_input_in_errors=True)

    app_env: Literal["local", "cloud"] = _env("APP_ENV", "local")
    home: Path = _env("ONEBOX_HOME")
    schema_path: Path = _env("SCHEMA_PATH", DEFAULT_SCHEMA_PATH)
    data_path: Path = _env("DATA_PATH")
    mlflow_tracking_uri: str = _env("MLFLOW_TRACKING_URI")
    # None: the tracking server decides where artifacts go (proxied).
    mlflow_artifact_root: str | None = _env("MLFLOW_ARTIFACT_ROOT")
    experiment_name: str = _env("MLFLOW_EXPERIMENT", "onebox-churn")
    model_name: str = _env("MODEL_NAME", "churn-classifier")
    prediction_store_url: Annotated[SecretStr, AfterValidator(_store_url)] = \
        _env("PREDICTION_STORE_URL")
    reports_dir: Path = _env("REPORTS_DIR")
    model_cache_dir: Path = _env("MODEL_CACHE_DIR")
    n_trials: int = _env("N_TRIALS", 20, ge=1)
    # The search's trials fit on at most this many training rows (and a third as many
    # validation rows), a seeded sample, so the search's time stops growing with the table;
    # the refit, the out-of-fold predictions and the gate use every row.  `make bench-train`
    # on 300,000 fare rows, 20 trials: the whole flow 38.5 s (58.5 s searching every row).
    search_max_rows: int = _env("SEARCH_MAX_ROWS", 50_000, ge=1000)
    promotion_margin: float = _env("PROMOTION_MARGIN", 0.002)
    # A regression model's answers carry an interval holding the real number this often.
    interval_level: float = _env("INTERVAL_LEVEL", 0.9, gt=0, lt=1)
    # A train run that finds MLflow away says so and tries again this often, this long apart.
    train_registry_retries: int = _env("TRAIN_REGISTRY_RETRIES", 5, ge=0)
    train_registry_retry_seconds: float = _env("TRAIN_REGISTRY_RETRY_SECONDS", 60.0, ge=0)
    reference_rows: int = _env("REFERENCE_ROWS", 5000, ge=100)
    max_batch_records: int = _env("MAX_BATCH_RECORDS", 1000, ge=1)
    max_body_bytes: int = _env("MAX_BODY_BYTES", 2_000_000, ge=1024)
    model_poll_seconds: float = _env("MODEL_POLL_SECONDS", 10.0, gt=0)
    prediction_log_enabled: bool = _env("PREDICTION_LOG", True)
    spool_dir: Path = _env("SPOOL_DIR")
    drift_window_rows: int = _env("DRIFT_WINDOW_ROWS", 3000, ge=50)
    drift_interval_seconds: float = _env("DRIFT_INTERVAL_SECONDS", 60.0, gt=0)
    drift_false_alarm_rate: float = _env("DRIFT_FALSE_ALARM_RATE",
                                         DEFAULT_DRIFT_FALSE_ALARM_RATE, gt=0, lt=1)
    drift_share_threshold: Fraction = _env("DRIFT_SHARE_THRESHOLD",
                                           DEFAULT_DRIFT_SHARE_THRESHOLD)
    prediction_drift_alarm: bool = _env("PREDICTION_DRIFT_ALARM",
                                        DEFAULT_PREDICTION_DRIFT_ALARM)
    quality_min_auc: Fraction = _env("QUALITY_MIN_AUC", DEFAULT_QUALITY_MIN_AUC)
    quality_min_labels: int = _env("QUALITY_MIN_LABELS", DEFAULT_QUALITY_MIN_LABELS, ge=1)
    quality_max_error_ratio: float = _env("QUALITY_MAX_ERROR_RATIO",
                                          DEFAULT_QUALITY_MAX_ERROR_RATIO, gt=1)
    estimated_auc_margin: Fraction = _env("ESTIMATED_AUC_MARGIN", DEFAULT_ESTIMATED_AUC_MARGIN)
    # Where the reports read the predictor's request counts (volume, refusals); None: they
    # fall back to the prediction log's rows per minute.
    prometheus_url: str | None = _env("PROMETHEUS_URL", None, pattern=r"^https?://")
    seed: int = _env("SEED", 42, ge=0)
    # The build this process runs (the image sets it at build time): the predictor's /health
    # says it, so during a rolling update each replica tells which one it is.
    release: str = _env("ONEBOX_RELEASE", "dev", min_length=1)
    # PREDICTOR_API_KEYS' records by key id (core.api_keys); empty: the API asks no key.
    api_keys: dict[str, ApiKey] = _env("PREDICTOR_API_KEYS", {})
    # Tags prediction ids (server.ids); None: a key file under the home.
    prediction_id_key: SecretStr | None = _env("PREDICTION_ID_KEY", None)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        return parse_keys(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   **_: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # from_env hands over the environment (os.environ, or a test's mapping) whole.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ONEBOX_HOME") or ".onebox").resolve()
        values: dict[str, Any] = {
            name: value for name, value in env.items()
            if name in _VARIABLES and not (value == "" and name in _EMPTY_MEANS_DEFAULT)}
        values["ONEBOX_HOME"] = home
        # Defaults that live under the home.
        # The table is named after the schema's file (churn.yaml: data/churn.csv), so
        # choosing a business by SCHEMA_PATH also chooses where its table is.
        schema_file = Path(values.get("SCHEMA_PATH") or DEFAULT_SCHEMA_PATH)
        values.setdefault("DATA_PATH", home / "data" / f"{schema_file.stem}.csv")
        values.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        values.setdefault("MLFLOW_ARTIFACT_ROOT", (home / "mlartifacts").as_uri())
        values["MLFLOW_ARTIFACT_ROOT"] = values["MLFLOW_ARTIFACT_ROOT"] or None
        values["PREDICTION_STORE_URL"] = (env.get("PREDICTION_STORE_URL")
                                          or _monitoring_db_url(env)
                                          or f"sqlite:///{home / 'predictions.db'}")
        values.setdefault("REPORTS_DIR", home / "reports")
        values.setdefault("MODEL_CACHE_DIR", home / "model-cache")
        values.setdefault("SPOOL_DIR", home / "spool")
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None
        except KeySpecError as exc:
            raise SettingsError(str(exc)) from None
        if settings.app_env != "local":
            _refuse_placeholders(env)
        return settings

    def with_overrides(self, **changes: object) -> Settings:
        return self.model_copy(update=changes)

    @property
    def prediction_store_shown(self) -> str:
        """The prediction log's URL with its password masked: for logs and messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.prediction_store_url.get_secret_value()).render_as_string(
            hide_password=True)


_VARIABLES = {str(field.validation_alias) for field in Settings.model_fields.values()}
# An empty value stands for "not set" (an .env line `N_TRIALS=`), except where empty says
# something (MLFLOW_ARTIFACT_ROOT: the tracking server decides).
_EMPTY_MEANS_DEFAULT = _VARIABLES - {"MLFLOW_ARTIFACT_ROOT"}


def _explain(exc: ValidationError) -> str:
    """One line per problem, each naming the environment variable."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: "
                     f"{error['msg'].removeprefix('Value error, ')}"
                     for error in exc.errors())


def postgres_url(*, user: str, password: str, host: str, port: int, database: str,
                 driver: str = "postgresql+psycopg2") -> str:
    """A PostgreSQL URL with every part URL-encoded: a password may hold @ / : % and more."""
    from sqlalchemy.engine import URL

    return URL.create(driver, username=user, password=password, host=host, port=port,
                      database=database).render_as_string(hide_password=False)


def _monitoring_db_url(env: Mapping[str, str]) -> str | None:
    """The prediction log's PostgreSQL URL from MONITORING_DB_* (the compose stack's way),
    or None when MONITORING_DB_HOST is not set."""
    host = env.get("MONITORING_DB_HOST")
    if not host:
        return None
    password = env.get("MONITORING_DB_PASSWORD")
    if not password:
        raise SettingsError("MONITORING_DB_PASSWORD must be set when MONITORING_DB_HOST is")
    port = env.get("MONITORING_DB_PORT") or "5432"
    if not port.isdigit():
        raise SettingsError(f"MONITORING_DB_PORT must be a port number, got {port!r}")
    return postgres_url(user=env.get("MONITORING_DB_USER") or "monitoring", password=password,
                        host=host, port=int(port),
                        database=env.get("MONITORING_DB_NAME") or "monitoring")


def _refuse_placeholders(env: Mapping[str, str]) -> None:
    bad = sorted(k for k, v in env.items()
                 if any(marker in v.lower() for marker in PLACEHOLDER_MARKERS))
    if bad:
        raise SettingsError(
            f"placeholder values must be replaced outside APP_ENV=local: {', '.join(bad)}"
        )
