#!/usr/bin/env bash
# tools/install-deps.sh — the Debian 12 packages glintru builds and runs with.
# Needs root (apt); a no-op for what is already installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS="postgresql-15 postgresql-server-dev-15 libopenblas-serial-dev make gcc libc6-dev xz-utils clang libclang-rt-14-dev libipc-run-perl python3-psycopg2 postgresql-15-cron"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "${missing// /}" ]; then
  if [ "$(id -u)" != 0 ]; then echo "missing packages:$missing (run as root to install)"; exit 1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $PKGS >/tmp/glintru-apt.log 2>&1 \
    || { tail -20 /tmp/glintru-apt.log; exit 1; }
fi
