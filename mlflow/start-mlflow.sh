#!/bin/sh
# Start the MLflow tracking server + registry on PostgreSQL, artifacts proxied by the server.
#
# The backend store is MLFLOW_BACKEND_STORE_URI when given; otherwise it is built from
# MLFLOW_DB_HOST / _PORT / _USER / _NAME / _PASSWORD with the password URL-encoded (a
# password with @ / : % in it would otherwise break the URI).
# The job runner is off: it costs ~2 GB of RSS and onebox does not use it.
#
# Schema: an empty database is initialised by the server itself; one an earlier MLflow
# made (it has MLflow's alembic_version) is migrated first with `mlflow db upgrade`, as
# MLflow's docs say (the server refuses an out-of-date schema).  A no-op when current.
set -eu
if [ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
  : "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD (or MLFLOW_BACKEND_STORE_URI)}"
  MLFLOW_BACKEND_STORE_URI=$(python -c '
import os
from sqlalchemy.engine import URL
env = os.environ
print(URL.create("postgresql", username=env.get("MLFLOW_DB_USER") or "mlflow",
                 password=env["MLFLOW_DB_PASSWORD"], host=env.get("MLFLOW_DB_HOST") or "postgres",
                 port=int(env.get("MLFLOW_DB_PORT") or 5432),
                 database=env.get("MLFLOW_DB_NAME") or "mlflow").render_as_string(hide_password=False))')
fi
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
schema=0
MLFLOW_BACKEND_STORE_URI="$MLFLOW_BACKEND_STORE_URI" python -c '
import os, sys
from sqlalchemy import create_engine, inspect
engine = create_engine(os.environ["MLFLOW_BACKEND_STORE_URI"])
sys.exit(0 if inspect(engine).has_table("alembic_version") else 10)' || schema=$?
case "$schema" in
  0) mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI" ;;
  10) ;;  # empty: the server creates the tables
  *) echo "start-mlflow: cannot read the MLflow database's schema" >&2; exit "$schema" ;;
esac
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/var/lib/onebox/mlartifacts}" \
  --serve-artifacts \
  --host 0.0.0.0 --port "${MLFLOW_PORT:-5051}" \
  --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}"
