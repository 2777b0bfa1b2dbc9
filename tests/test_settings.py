"""Settings: embedded defaults, validation that names the variable, no placeholders in cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, SettingsError


def test_embedded_defaults_live_under_onebox_home(tmp_path: Path) -> None:
    s = Settings.from_env({"ONEBOX_HOME": str(tmp_path)})
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert s.prediction_store_url.get_secret_value() == f"sqlite:///{tmp_path}/predictions.db"
    assert s.data_path == tmp_path / "data" / "churn.csv"
    assert s.reports_dir == tmp_path / "reports"
    assert s.mlflow_artifact_root == (tmp_path / "mlartifacts").as_uri()


def test_the_table_is_named_after_the_schema_chosen(tmp_path: Path) -> None:
    """Choosing a business by SCHEMA_PATH also chooses its table; DATA_PATH still wins."""
    env = {"ONEBOX_HOME": str(tmp_path), "SCHEMA_PATH": "core/schemas/flights.yaml"}
    assert Settings.from_env(env).data_path == tmp_path / "data" / "flights.csv"
    assert Settings.from_env({**env, "DATA_PATH": "/x/y.csv"}).data_path == Path("/x/y.csv")


def test_postgres_dsn_gets_the_driver_named() -> None:
    s = Settings.from_env({"PREDICTION_STORE_URL": "postgres://u:p@db:5432/monitoring"})
    assert (s.prediction_store_url.get_secret_value()
            == "postgresql+psycopg2://u:p@db:5432/monitoring")


def test_empty_artifact_root_leaves_it_to_the_tracking_server() -> None:
    assert Settings.from_env({"MLFLOW_ARTIFACT_ROOT": ""}).mlflow_artifact_root is None


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"N_TRIALS": "many"}, "N_TRIALS: Input should be a valid integer"),
        ({"N_TRIALS": "0"}, "N_TRIALS: Input should be greater than or equal to 1"),
        ({"PROMOTION_MARGIN": "x"}, "PROMOTION_MARGIN: Input should be a valid number"),
        ({"PREDICTION_LOG": "maybe"}, "PREDICTION_LOG: Input should be a valid boolean"),
        ({"QUALITY_MIN_AUC": "1.5"}, "QUALITY_MIN_AUC: Input should be less than or equal to 1"),
        ({"PREDICTOR_API_KEYS": "crm:predict"}, "PREDICTOR_API_KEYS: PREDICTOR_API_KEYS record 1"),
        ({"PREDICTION_STORE_URL": "mysql://x"}, "PREDICTION_STORE_URL"),
        ({"APP_ENV": "prod"}, "APP_ENV"),
        ({"PROMETHEUS_URL": "prometheus:9090"}, "PROMETHEUS_URL"),
    ],
)
def test_bad_values_stop_the_process_naming_the_variable(env: dict, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_prometheus_url_is_optional() -> None:
    assert Settings.from_env({}).prometheus_url is None
    assert Settings.from_env({"PROMETHEUS_URL": ""}).prometheus_url is None
    url = "http://prometheus:9090"
    assert Settings.from_env({"PROMETHEUS_URL": url}).prometheus_url == url


def test_placeholder_secrets_are_refused_outside_local() -> None:
    env = {"APP_ENV": "cloud", "POSTGRES_PASSWORD": "change-me"}
    with pytest.raises(SettingsError, match="POSTGRES_PASSWORD"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "APP_ENV": "local"}).app_env == "local"


def test_monitoring_db_parts_make_a_url_with_the_password_encoded() -> None:
    s = Settings.from_env({"MONITORING_DB_HOST": "postgres",
                           "MONITORING_DB_PASSWORD": "p@ss/w:rd%?#",
                           "MONITORING_DB_USER": "mon", "MONITORING_DB_NAME": "log"})
    assert s.prediction_store_url.get_secret_value() == (
        "postgresql+psycopg2://mon:p%40ss%2Fw%3Ard%25%3F%23@postgres:5432/log")
    # What logs and error messages show of it never holds the password.
    assert s.prediction_store_shown == "postgresql+psycopg2://mon:***@postgres:5432/log"
    # An explicit URL wins over the parts.
    explicit = Settings.from_env({"MONITORING_DB_HOST": "postgres",
                                  "MONITORING_DB_PASSWORD": "x",
                                  "PREDICTION_STORE_URL": "sqlite:///elsewhere.db"})
    assert explicit.prediction_store_url.get_secret_value() == "sqlite:///elsewhere.db"


def test_monitoring_db_host_without_a_password_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MONITORING_DB_PASSWORD"):
        Settings.from_env({"MONITORING_DB_HOST": "postgres"})


def test_secrets_never_show_in_a_repr_or_an_error() -> None:
    password, id_key = "s3cret-Pa55word", "id-key-that-must-not-leak"
    s = Settings.from_env({"MONITORING_DB_HOST": "db", "MONITORING_DB_PASSWORD": password,
                           "PREDICTION_ID_KEY": id_key})
    for text in (repr(s), str(s), str(s.model_dump()), s.prediction_store_shown):
        assert password not in text and id_key not in text
    assert password in s.prediction_store_url.get_secret_value()
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PREDICTION_STORE_URL": f"mysql://u:{password}@db/x"})
    assert password not in str(refused.value) and "PREDICTION_STORE_URL" in str(refused.value)


def test_on_and_off_switches_and_empty_values_mean_the_default(tmp_path: Path) -> None:
    s = Settings.from_env({"ONEBOX_HOME": str(tmp_path), "PREDICTION_LOG": "off",
                           "PREDICTION_DRIFT_ALARM": "on", "N_TRIALS": "", "REPORTS_DIR": ""})
    assert s.prediction_log_enabled is False and s.prediction_drift_alarm is True
    assert s.n_trials == 20 and s.reports_dir == tmp_path / "reports"
