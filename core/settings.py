"""One settings object per process, read from the environment once at start.

Every variable is documented in `.env.local`.  On the embedded path (no Docker)
everything defaults to files under `ONEBOX_HOME` (`./.onebox`): an SQLite MLflow
store, an SQLite prediction log, local folders for data, reports and the model
cache.  In the compose stack the same variables point at the real servers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from core.api_keys import ApiKey, KeySpecError, parse_keys
from core.schema import DEFAULT_SCHEMA_PATH

PLACEHOLDER_MARKERS = ("change-me", "changeme")

# The drift alarm's defaults (monitoring.drift reads them too, so a caller without
# settings gets the same decision).  Why these numbers: README, "Drift alarm".
DEFAULT_DRIFT_FALSE_ALARM_RATE = 0.005
DEFAULT_DRIFT_SHARE_THRESHOLD = 0.0
DEFAULT_QUALITY_MIN_AUC = 0.65
DEFAULT_QUALITY_MIN_LABELS = 200
DEFAULT_PREDICTION_DRIFT_ALARM = False


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    app_env: str
    home: Path
    schema_path: Path
    data_path: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str | None  # None: the tracking server decides (proxied artifacts)
    experiment_name: str
    model_name: str
    prediction_store_url: str
    reports_dir: Path
    model_cache_dir: Path
    n_trials: int
    promotion_margin: float
    reference_rows: int
    max_batch_records: int
    max_body_bytes: int
    model_poll_seconds: float
    prediction_log_enabled: bool
    spool_dir: Path
    drift_window_rows: int
    drift_interval_seconds: float
    drift_false_alarm_rate: float
    drift_share_threshold: float
    prediction_drift_alarm: bool
    quality_min_auc: float
    quality_min_labels: int
    seed: int
    api_keys: dict[str, ApiKey]          # PREDICTOR_API_KEYS; empty: the API asks no key
    prediction_id_key: bytes | None      # tags prediction ids; None: a file under the home

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("ONEBOX_HOME", ".onebox")).resolve()
        app_env = env.get("APP_ENV", "local")
        settings = cls(
            app_env=app_env,
            home=home,
            schema_path=Path(env.get("SCHEMA_PATH", str(DEFAULT_SCHEMA_PATH))),
            data_path=Path(env.get("DATA_PATH", str(home / "data" / "churn.csv"))),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
            mlflow_artifact_root=env.get(
                "MLFLOW_ARTIFACT_ROOT", (home / "mlartifacts").as_uri()
            ) or None,
            experiment_name=env.get("MLFLOW_EXPERIMENT", "onebox-churn"),
            model_name=env.get("MODEL_NAME", "churn-classifier"),
            prediction_store_url=_store_url(
                env.get("PREDICTION_STORE_URL")
                or _monitoring_db_url(env)
                or f"sqlite:///{home / 'predictions.db'}"
            ),
            reports_dir=Path(env.get("REPORTS_DIR", str(home / "reports"))),
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR", str(home / "model-cache"))),
            n_trials=_int(env, "N_TRIALS", 20, minimum=1),
            promotion_margin=_float(env, "PROMOTION_MARGIN", 0.002),
            reference_rows=_int(env, "REFERENCE_ROWS", 5000, minimum=100),
            max_batch_records=_int(env, "MAX_BATCH_RECORDS", 1000, minimum=1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 2_000_000, minimum=1024),
            model_poll_seconds=_float(env, "MODEL_POLL_SECONDS", 10.0),
            prediction_log_enabled=_switch(env, "PREDICTION_LOG", True),
            spool_dir=Path(env.get("SPOOL_DIR", str(home / "spool"))),
            drift_window_rows=_int(env, "DRIFT_WINDOW_ROWS", 3000, minimum=50),
            drift_interval_seconds=_float(env, "DRIFT_INTERVAL_SECONDS", 60.0),
            drift_false_alarm_rate=_float(env, "DRIFT_FALSE_ALARM_RATE",
                                          DEFAULT_DRIFT_FALSE_ALARM_RATE),
            drift_share_threshold=_float(env, "DRIFT_SHARE_THRESHOLD",
                                         DEFAULT_DRIFT_SHARE_THRESHOLD),
            prediction_drift_alarm=_switch(env, "PREDICTION_DRIFT_ALARM",
                                           DEFAULT_PREDICTION_DRIFT_ALARM),
            quality_min_auc=_float(env, "QUALITY_MIN_AUC", DEFAULT_QUALITY_MIN_AUC),
            quality_min_labels=_int(env, "QUALITY_MIN_LABELS", DEFAULT_QUALITY_MIN_LABELS,
                                    minimum=1),
            seed=_int(env, "SEED", 42, minimum=0),
            api_keys=_api_keys(env),
            prediction_id_key=(env.get("PREDICTION_ID_KEY") or "").encode() or None,
        )
        if settings.model_poll_seconds <= 0:
            raise SettingsError("MODEL_POLL_SECONDS must be > 0")
        if not 0 < settings.drift_false_alarm_rate < 1:
            raise SettingsError("DRIFT_FALSE_ALARM_RATE must be between 0 and 1 (exclusive), "
                                f"got {settings.drift_false_alarm_rate}")
        for name, value in (("DRIFT_SHARE_THRESHOLD", settings.drift_share_threshold),
                            ("QUALITY_MIN_AUC", settings.quality_min_auc)):
            if not 0 <= value <= 1:
                raise SettingsError(f"{name} must be between 0 and 1, got {value}")
        if app_env not in ("local", "cloud"):
            raise SettingsError(f"APP_ENV must be 'local' or 'cloud', got {app_env!r}")
        if app_env != "local":
            _refuse_placeholders(env)
        return settings

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def prediction_store_shown(self) -> str:
        """The prediction log's URL with its password masked: for logs and messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.prediction_store_url).render_as_string(hide_password=True)


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
    return postgres_url(user=env.get("MONITORING_DB_USER") or "monitoring", password=password,
                        host=host, port=_int(env, "MONITORING_DB_PORT", 5432, minimum=1),
                        database=env.get("MONITORING_DB_NAME") or "monitoring")


def _api_keys(env: Mapping[str, str]) -> dict[str, ApiKey]:
    try:
        return parse_keys(env.get("PREDICTOR_API_KEYS", ""))
    except KeySpecError as exc:
        raise SettingsError(str(exc)) from None


def _store_url(url: str) -> str:
    # Users write libpq-style DSNs; SQLAlchemy wants the driver named.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg2://")):
        raise SettingsError(
            "PREDICTION_STORE_URL must be sqlite:///PATH or postgresql://USER:PASS@HOST/DB"
        )
    return url


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("on", "true", "1", "yes"):
        return True
    if raw.lower() in ("off", "false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be on or off, got {raw!r}")


def _refuse_placeholders(env: Mapping[str, str]) -> None:
    bad = sorted(k for k, v in env.items()
                 if any(marker in v.lower() for marker in PLACEHOLDER_MARKERS))
    if bad:
        raise SettingsError(
            f"placeholder values must be replaced outside APP_ENV=local: {', '.join(bad)}"
        )
