#!/bin/bash
# The onebox image's entrypoint.  Under Docker Swarm a secret is a file in /run/secrets,
# and the stack (docker-stack.yml) names it in NAME_FILE: NAME is set from the file, and
# NAME_FILE removed, before the command runs — so every service (and Prefect, MLflow,
# gunicorn) reads its settings from the environment as under compose.  Only files in
# Swarm's secrets folder count (ONEBOX_SECRETS_DIR, for a test): other *_FILE variables
# (SSL_CERT_FILE) are left as they are.
set -euo pipefail
secrets_dir=${ONEBOX_SECRETS_DIR:-/run/secrets}
for file_variable in $(compgen -e); do
  case "$file_variable" in *_FILE) ;; *) continue ;; esac
  path=${!file_variable}
  case "$path" in "$secrets_dir"/*) ;; *) continue ;; esac
  name=${file_variable%_FILE}
  if [ -n "${!name:-}" ]; then
    echo "onebox: both $name and $file_variable are set; set one" >&2
    exit 64
  fi
  if [ ! -r "$path" ]; then
    echo "onebox: $file_variable names $path, which cannot be read (is the secret granted?)" >&2
    exit 64
  fi
  export "$name=$(cat "$path")"
  unset "$file_variable"
done
exec "$@"
