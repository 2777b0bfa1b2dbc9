#!/bin/sh
# Start the MLflow tracking server on Postgres with proxied artifacts.
# The job runner is off: it costs ~2 GB of RSS and onebox does not use it.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI}"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
  --serve-artifacts \
  --host 0.0.0.0 --port "${MLFLOW_PORT:-5051}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:5051,localhost,localhost:5051,127.0.0.1:5051}"
