#!/usr/bin/env bash
# The stack's state in one archive, and back: run by `make backup` / `make restore` as the
# compose service `backup` (the PostgreSQL image: its pg_dump matches the server).
#
#   backup            -> /backups/onebox-<UTC time>.tar.gz and its .sha256
#   restore NAME      <- /backups/NAME (checksum verified first)
#
# What it holds: the three service databases (MLflow's registry and runs, Prefect's
# deployments and runs, the prediction log with its feedback) as pg_dump custom-format
# dumps, MLflow's artifacts (the model files), the reports, and the training table the
# train flow reads (a user's own, or the generated demo table).  Not the secrets: .env
# stays where it is (restore into a stack with the same .env, or the old prediction ids'
# feedback is refused: their tags are signed with PREDICTION_ID_KEY).  Not Prometheus's
# series nor Grafana's state: both are rebuilt from the files and the traffic.
#
# A backup runs while the stack serves (each pg_dump is one consistent snapshot of its
# database).  A restore expects the services that write those databases and folders to
# be stopped (make restore stops and starts them); it replaces each database whole.
set -euo pipefail

ARTIFACTS=/var/lib/onebox/mlartifacts
REPORTS=/var/lib/onebox/reports
DATA=/var/lib/onebox/data
MODEL_CACHE=/var/lib/onebox/model-cache
OUT=/backups
# name of the database, its owner: the same variables (and defaults) as the stack's setup.
DATABASES=(
  "mlflow:${MLFLOW_DB_NAME:-mlflow}:${MLFLOW_DB_USER:-mlflow}"
  "prefect:${PREFECT_DB_NAME:-prefect}:${PREFECT_DB_USER:-prefect}"
  "monitoring:${MONITORING_DB_NAME:-monitoring}:${MONITORING_DB_USER:-monitoring}"
)

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# The scratch folder of this run, removed at exit however it ends.
work=
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

wait_for_postgres() {
  for _ in $(seq 60); do
    pg_isready -q -d postgres && return 0
    sleep 1
  done
  echo "PostgreSQL at $PGHOST does not answer" >&2
  exit 1
}

backup() {
  wait_for_postgres
  local stamp name
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  name="onebox-$stamp.tar.gz"
  work=$(mktemp -d "$OUT/.onebox-$stamp.XXXX")
  mkdir -p "$work/databases"
  for entry in "${DATABASES[@]}"; do
    IFS=: read -r key db _owner <<<"$entry"
    pg_dump --format=custom --no-owner --no-privileges -d "$db" -f "$work/databases/$key.pgdump"
    say "database $db: $(du -h "$work/databases/$key.pgdump" | cut -f1)"
  done
  # The folders as they are (tar keeps the owner: the services' user, uid 10001).
  tar -C "$ARTIFACTS" -cf "$work/mlartifacts.tar" .
  tar -C "$REPORTS" -cf "$work/reports.tar" .
  tar -C "$DATA" -cf "$work/data.tar" .
  {
    echo "onebox backup $stamp"
    echo "postgres $(pg_dump --version)"
    for entry in "${DATABASES[@]}"; do echo "database ${entry}"; done
    echo "mlartifacts files $(find "$ARTIFACTS" -type f | wc -l)"
    echo "reports files $(find "$REPORTS" -type f | wc -l)"
    echo "data files $(find "$DATA" -type f | wc -l)"
  } >"$work/MANIFEST"
  # Written aside, then renamed: an archive under its final name is whole.
  tar -C "$work" -czf "$OUT/.$name.part" MANIFEST databases mlartifacts.tar reports.tar data.tar
  mv "$OUT/.$name.part" "$OUT/$name"
  (cd "$OUT" && sha256sum "$name" >"$name.sha256")
  say "wrote $OUT/$name ($(du -h "$OUT/$name" | cut -f1)) and $name.sha256"
}

restore() {
  local name=${1:?usage: restore ARCHIVE-NAME (a file in the backup folder)}
  name=$(basename "$name")
  [ -f "$OUT/$name" ] || { echo "no $name in the backup folder" >&2; exit 2; }
  [ -f "$OUT/$name.sha256" ] || { echo "no $name.sha256 beside it: refusing an unchecked archive" >&2; exit 2; }
  (cd "$OUT" && sha256sum --check --quiet "$name.sha256") \
    || { echo "$name does not match its checksum: not restored" >&2; exit 3; }
  wait_for_postgres
  work=$(mktemp -d /tmp/restore.XXXX)
  tar -C "$work" -xzf "$OUT/$name"
  for entry in "${DATABASES[@]}"; do
    IFS=: read -r key db owner <<<"$entry"
    # The role exists (the stack's setup made it, with this stack's password); the
    # database is made anew, owned by it, and filled from the dump as that role.
    psql -v ON_ERROR_STOP=1 -q -d postgres \
      -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
      -c "CREATE DATABASE \"$db\" OWNER \"$owner\""
    pg_restore --exit-on-error --no-owner --no-privileges --role="$owner" -d "$db" \
      "$work/databases/$key.pgdump"
    say "database $db restored"
  done
  find "$ARTIFACTS" -mindepth 1 -delete
  tar -C "$ARTIFACTS" -xf "$work/mlartifacts.tar"
  find "$REPORTS" -mindepth 1 -delete
  tar -C "$REPORTS" -xf "$work/reports.tar"
  find "$DATA" -mindepth 1 -delete
  tar -C "$DATA" -xf "$work/data.tar"
  # The predictor's copies are keyed by version number, which the restored registry may
  # give to other models than the ones cached: the cache starts empty.
  find "$MODEL_CACHE" -mindepth 1 -delete
  say "restored $name"
}

case "${1:-}" in
  backup) backup ;;
  restore) shift; restore "$@" ;;
  *) echo "usage: backup.sh backup | backup.sh restore ARCHIVE-NAME" >&2; exit 2 ;;
esac
