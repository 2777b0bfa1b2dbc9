"""One-off, idempotent setup of the stack's PostgreSQL: a role and a database for each
service that keeps state there (MLflow, Prefect, the prediction log), and the
prediction-log tables.  Compose runs it before the services that need it; running
it again changes nothing.

The admin connection comes from POSTGRES_HOST / POSTGRES_PORT / POSTGRES_USER /
POSTGRES_PASSWORD (passed to libpq as separate values: no password needs URL-encoding),
or from a POSTGRES_ADMIN_DSN.  The settings are checked first, so a cloud configuration
with a placeholder secret stops here, before any role is created with it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from core.settings import Settings
from core.store import PredictionStore


@dataclass(frozen=True)
class ServiceDatabase:
    name: str
    user: str
    password: str


def databases_from_env(env: Mapping[str, str]) -> list[ServiceDatabase]:
    """The three service databases; each password variable is required."""
    out = []
    for service in ("MLFLOW", "PREFECT", "MONITORING"):
        password = env.get(f"{service}_DB_PASSWORD")
        if not password:
            raise SystemExit(f"{service}_DB_PASSWORD must be set")
        out.append(ServiceDatabase(
            name=env.get(f"{service}_DB_NAME", service.lower()),
            user=env.get(f"{service}_DB_USER", service.lower()),
            password=password,
        ))
    return out


AdminConnection = str | Mapping[str, str]  # a DSN, or libpq keyword arguments


def admin_connection_from_env(env: Mapping[str, str]) -> AdminConnection:
    """POSTGRES_ADMIN_DSN when given, else the POSTGRES_* parts (POSTGRES_PASSWORD required)."""
    if env.get("POSTGRES_ADMIN_DSN"):
        return env["POSTGRES_ADMIN_DSN"]
    if not env.get("POSTGRES_PASSWORD"):
        raise SystemExit("POSTGRES_PASSWORD (with POSTGRES_HOST) or POSTGRES_ADMIN_DSN must be set")
    return {"host": env.get("POSTGRES_HOST") or "postgres",
            "port": env.get("POSTGRES_PORT") or "5432",
            "user": env.get("POSTGRES_USER") or "postgres",
            "password": env["POSTGRES_PASSWORD"],
            "dbname": "postgres"}


@retry(stop=stop_after_delay(120), wait=wait_fixed(1), reraise=True,
       retry=retry_if_exception_type(psycopg2.OperationalError))
def connect_admin(admin: AdminConnection) -> psycopg2.extensions.connection:
    """Connect as the admin role, waiting for the server to accept connections."""
    conn = psycopg2.connect(admin) if isinstance(admin, str) else psycopg2.connect(**admin)
    conn.autocommit = True
    return conn


def ensure_database(admin: AdminConnection, db: ServiceDatabase) -> list[str]:
    """Create the role and the database if missing; returns what was created."""
    created = []
    conn = connect_admin(admin)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db.user,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s")
                            .format(sql.Identifier(db.user)), (db.password,))
                created.append(f"role {db.user}")
            else:  # keep the password in step with the environment
                cur.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD %s")
                            .format(sql.Identifier(db.user)), (db.password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db.name), sql.Identifier(db.user)))
                created.append(f"database {db.name}")
    finally:
        conn.close()
    return created


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    env = os.environ
    settings = Settings.from_env(env)  # refuses placeholders (APP_ENV=cloud) before anything
    admin = admin_connection_from_env(env)
    for db in databases_from_env(env):
        created = ensure_database(admin, db)
        print(f"{db.name}: {', '.join(created) if created else 'already there'}")
    store_url = settings.prediction_store_url.get_secret_value()
    if store_url.startswith("postgresql"):
        store = PredictionStore(store_url)
        store.migrate()
        store.dispose()
        print("prediction log tables: migrated to the newest revision")


if __name__ == "__main__":
    main()
