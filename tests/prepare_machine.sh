#!/usr/bin/env bash
# make test-prereqs: on a fresh Debian 12 machine, install and start what `make test` needs.
# Run as root (or with sudo); everything already there is left as it is.
#   - Python 3.11 with venv (the test venv), PostgreSQL (its client and initdb: the tests
#     start a throwaway cluster when no server answers), Prometheus + promtool,
#     Alertmanager + amtool and nginx (monitoring tests), wrk (make bench), chromium and its
#     chromedriver (browser tests)
#   - a Docker engine (Debian's docker.io, started here: no systemd) with a docker CLI of
#     version 26 or later (Swarm jobs in stack files) and the compose v2 and buildx plugins
#     (not in Debian 12: taken from Debian 13's packages, unpacked, never installed as
#     packages), and mmdebstrap for the stand-in images (stack and swarm tests)
set -euo pipefail

log() { printf '== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
}

missing=()
need() {  # need COMMAND PACKAGE: queue PACKAGE when COMMAND is not there
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || missing+=("$2")
}
need python3.11 python3.11
python3.11 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3.11-venv)
need pg_ctlcluster postgresql
need psql postgresql-client
need prometheus prometheus
need promtool prometheus
need prometheus-alertmanager prometheus-alertmanager
need amtool prometheus-alertmanager
need nginx nginx
need wrk wrk
need chromium chromium
need chromedriver chromium-driver
need dockerd docker.io
need mmdebstrap mmdebstrap
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
fi

# --- from Debian 13 (trixie): packages unpacked, never installed -------------------------
trixie_unpack() {  # PACKAGE...: unpacked into $work/root
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$work/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives"
        -o "APT::Sandbox::User=root")
  as_root apt-get "${opts[@]}" update -qq
  (cd "$work" && as_root apt-get "${opts[@]}" download "$@" >/dev/null)
  for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
}

# The docker CLI: Debian 12's (20.10) has no `docker stack config` and refuses Swarm jobs
# (`mode: replicated-job`) in a stack file: Debian 13's, in /usr/local/bin (ahead of
# /usr/bin on PATH).  It talks to the 20.10 engine at that engine's API version.
# (`docker version` exits 1 while no engine answers, even with only the client's fields
# asked for: the engine is started further down, so its status is ignored here.)
client_version() { docker version --format '{{.Client.Version}}' 2>/dev/null || true; }
cli_major=$(client_version | cut -d. -f1)
if [ "${cli_major:-0}" -lt 26 ]; then
  log "docker CLI 26 from Debian 13 (trixie) packages"
  trixie_unpack docker-cli
  as_root install -m 0755 "$work/root/usr/bin/docker" /usr/local/bin/docker
  rm -rf "$work"
  hash -r
fi
echo "docker CLI $(client_version)"

# --- compose v2 and buildx: Debian 13's static binaries as CLI plugins ---------------------
plugins=/usr/local/lib/docker/cli-plugins
if ! docker compose version >/dev/null 2>&1 || ! docker buildx version >/dev/null 2>&1; then
  log "compose v2 + buildx plugins from Debian 13 (trixie) packages"
  trixie_unpack docker-compose docker-buildx
  as_root mkdir -p "$plugins"
  as_root cp "$work"/root/usr/libexec/docker/cli-plugins/docker-compose \
             "$work"/root/usr/libexec/docker/cli-plugins/docker-buildx "$plugins/"
  rm -rf "$work"
fi
docker compose version

# --- the Docker engine ------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  # A daemon ended uncleanly leaves its pid file; dockerd refuses to start over it.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    as_root rm -f /var/run/docker.pid
  fi
  as_root bash -c 'setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &'
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 30 /var/log/dockerd.log >&2; exit 1; }
fi
docker info --format 'engine {{.ServerVersion}}, storage {{.Driver}}'

# --- PostgreSQL: the machine's server when it has one (the tests fall back to a throwaway
# cluster of their own when none answers) ---------------------------------------------------
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ -n "$version" ]; then
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
fi
log "ready: make test"
