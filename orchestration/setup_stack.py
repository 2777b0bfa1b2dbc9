"""One-off, idempotent setup of the stack's PostgreSQL: a role and a database for each
service that keeps state there (MLflow, Prefect, the prediction log), and the
prediction-log tables.  Compose runs it before the services that need it; running
it again changes nothing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

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


@retry(stop=stop_after_delay(120), wait=wait_fixed(1), reraise=True,
       retry=retry_if_exception_type(psycopg2.OperationalError))
def connect_admin(admin_dsn: str) -> psycopg2.extensions.connection:
    """Connect as the admin role, waiting for the server to accept connections."""
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    return conn


def ensure_database(admin_dsn: str, db: ServiceDatabase) -> list[str]:
    """Create the role and the database if missing; returns what was created."""
    created = []
    conn = connect_admin(admin_dsn)
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
    admin_dsn = env.get("POSTGRES_ADMIN_DSN")
    if not admin_dsn:
        raise SystemExit("POSTGRES_ADMIN_DSN must be set (postgresql://postgres:PASS@HOST/postgres)")
    for db in databases_from_env(env):
        created = ensure_database(admin_dsn, db)
        print(f"{db.name}: {', '.join(created) if created else 'already there'}")
    store_url = env.get("PREDICTION_STORE_URL")
    if store_url:
        from core.settings import Settings

        store = PredictionStore(Settings.from_env().prediction_store_url)
        store.create_schema()
        store.dispose()
        print("prediction log tables: ready")


if __name__ == "__main__":
    main()
