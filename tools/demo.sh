#!/usr/bin/env bash
# tools/demo.sh — the README's first command: on a fresh Debian 12 machine,
# install what glintru needs, build and install it, start a throwaway cluster
# (no system service) and run the demo (tools/demo.sql: synthetic data,
# training in the database, evaluation, live recommendations); the cluster
# is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== packages"; bash tools/install-deps.sh
export PATH=${GLINTRU_PGBIN:-/usr/lib/postgresql/15/bin}:$PATH
echo "== build and install"
make -s with_llvm=no >/tmp/glintru-build.log 2>&1 && make -s with_llvm=no install >>/tmp/glintru-build.log 2>&1 \
  || { cat /tmp/glintru-build.log; exit 1; }
. tools/cluster.sh
DIR=$(mktemp -d /tmp/glintru-demo.XXXXXX)
trap 'cluster_stop "$DIR"; rm -rf "$DIR"' EXIT
echo "== throwaway cluster"; cluster_start "$DIR"
psql -X -q -v ON_ERROR_STOP=1 -f tools/demo.sql
