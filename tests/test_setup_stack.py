"""The one-off stack setup against the real PostgreSQL server: creates, then changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2 import sql

from operations.setup_stack import ServiceDatabase, databases_from_env, ensure_database
from tests.conftest import ADMIN_DSN

pytestmark = pytest.mark.postgres


@pytest.fixture
def service_db() -> Iterator[ServiceDatabase]:
    suffix = uuid.uuid4().hex[:10]
    db = ServiceDatabase(f"onebox_setup_{suffix}", f"onebox_setup_{suffix}", "s3cret")
    yield db
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                    .format(sql.Identifier(db.name)))
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.user)))
    conn.close()


def test_creates_role_and_database_once(service_db: ServiceDatabase) -> None:
    assert ensure_database(ADMIN_DSN, service_db) == [
        f"role {service_db.user}", f"database {service_db.name}"]
    assert ensure_database(ADMIN_DSN, service_db) == []
    conn = psycopg2.connect(ADMIN_DSN)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                    (service_db.name,))
        assert cur.fetchone() == (service_db.user,)
    conn.close()


def test_each_service_password_is_required() -> None:
    with pytest.raises(SystemExit, match="PREFECT_DB_PASSWORD"):
        databases_from_env({"MLFLOW_DB_PASSWORD": "a", "MONITORING_DB_PASSWORD": "b"})


def test_a_password_full_of_url_characters_reaches_postgres_intact() -> None:
    """setup creates the role with the password as it is; the prediction log's URL, built
    from MONITORING_DB_* parts, still names the right host, port and database (a raw @ or
    / splits a URL elsewhere).  The password itself is checked by scram in the stack test:
    the servers here may trust loopback."""
    from psycopg2.extensions import parse_dsn

    from core.settings import Settings
    from core.store import PredictionStore

    suffix = uuid.uuid4().hex[:10]
    db = ServiceDatabase(f"onebox_setup_{suffix}", f"onebox_setup_{suffix}", "p@ss/w:rd%?&#x")
    admin = parse_dsn(ADMIN_DSN)
    try:
        ensure_database(ADMIN_DSN, db)
        settings = Settings.from_env({
            "MONITORING_DB_HOST": admin.get("host", "127.0.0.1"),
            "MONITORING_DB_PORT": admin.get("port", "5432"),
            "MONITORING_DB_USER": db.user, "MONITORING_DB_NAME": db.name,
            "MONITORING_DB_PASSWORD": db.password})
        store = PredictionStore(settings.prediction_store_url.get_secret_value())
        store.migrate()
        assert store.count() == 0
        store.dispose()
    finally:
        conn = psycopg2.connect(ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                        .format(sql.Identifier(db.name)))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(db.user)))
        conn.close()
