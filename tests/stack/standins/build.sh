#!/usr/bin/env bash
# Build the stand-ins for the stack's upstream images on a machine that cannot pull any
# (this one): a Debian 12 base from mmdebstrap, then Python, PostgreSQL, Prometheus,
# Alertmanager and nginx from Debian's packages.  tests/stack/compose.offline.yml swaps them in.
# An image already built is kept (its tag exists, built from its folder's files as they are
# now); --rebuild builds everything again.
# Grafana has no stand-in: no registry reachable here has it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rebuild=""
[ "${1:-}" = "--rebuild" ] && rebuild=1

work=$(mktemp -d)
cleanup() { rm -rf "$work" "$here/python/ca-certificates.crt"; }
trap cleanup EXIT

have() { [ -z "$rebuild" ] && docker image inspect "$1" >/dev/null 2>&1; }
say() { printf '== stand-in %s\n' "$*"; }

base=onebox-standin/debian:bookworm
if have "$base"; then
  say "$base: already built"
else
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
  say "$base: mmdebstrap (about 30 s)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$work/rootfs.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    "$work/rootfs.tar" "$base" >/dev/null
  rebuild=1  # everything above the base is stale now
fi

build() {  # tag, folder: built again when the folder's files changed (a label holds their hash)
  local source
  source=$(cd "$here/$2" && find . -type f ! -name ca-certificates.crt -print0 | sort -z \
           | xargs -0 sha256sum | sha256sum | cut -c1-16)
  if have "$1" && [ "$(docker image inspect --format \
      '{{index .Config.Labels "onebox.standin.source"}}' "$1")" = "$source" ]; then
    say "$1: already built"; return
  fi
  say "$1: building"
  docker build --quiet --label "onebox.standin.source=$source" --tag "$1" "$here/$2" >/dev/null
}

# The Python stand-in carries this machine's CA bundle (pip reaches PyPI through it).
cp /etc/ssl/certs/ca-certificates.crt "$here/python/ca-certificates.crt"
build onebox-standin/python:3.11 python
build onebox-standin/postgres:15 postgres
build onebox-standin/prometheus:2.42 prometheus
build onebox-standin/alertmanager:0.25 alertmanager
build onebox-standin/nginx:1.22 nginx
