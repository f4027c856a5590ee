#!/usr/bin/env bash
# test/tap.sh — the server-level tests written for PostgreSQL's TAP framework
# (test/t/*.pl: PostgreSQL::Test::Cluster, each test starts its own clusters
# with the installed extension).  Runs prove as the postgres user (initdb
# refuses root), prints prove's output, then one "ok: …" line per passing TAP
# test and one "FAILED: …" line per failing one (test/run.sh counts them), and
# ends with test_summary.  Arguments: TAP files (default test/t/*.pl).
# GLINTRU_TAP_JOBS=N runs N files in parallel (prove -j; default 1);
# GLINTRU_TAP_COPY=1 runs from a copy of test/ even when postgres can read the tree.
# Logs: kept in the printed directory when something failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
. test/lib.sh
export PATH=${GLINTRU_PGBIN:-/usr/lib/postgresql/15/bin}:$PATH
PGXS_DIR=$(dirname "$(pg_config --pgxs)")/..
PERL_LIB=$(cd "$PGXS_DIR/test/perl" && pwd)
PG_REGRESS=$(cd "$PGXS_DIR/test/regress" && pwd)/pg_regress
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# IPC::Run, which PostgreSQL::Test::Utils needs
if ! perl -MIPC::Run -e 1 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libipc-run-perl >/tmp/glintru-tap-apt.log 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libipc-run-perl >>/tmp/glintru-tap-apt.log 2>&1; } \
      || { tail -5 /tmp/glintru-tap-apt.log; bad "apt-get install libipc-run-perl"; test_summary tap; exit 1; }
  else
    bad "perl module IPC::Run missing (apt-get install libipc-run-perl, as root)"; test_summary tap; exit 1
  fi
fi
[ -f "$PERL_LIB/PostgreSQL/Test/Cluster.pm" ] \
  || { bad "no PostgreSQL::Test::Cluster in $PERL_LIB (postgresql-server-dev-15)"; test_summary tap; exit 1; }

WORK=$(mktemp -d /tmp/glintru-tap.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
cleanup() { if [ "$failed" = 0 ]; then rm -rf "$WORK"; else echo "(TAP logs kept in $WORK/tmp_check/log)"; fi; }
trap cleanup EXIT

# the postgres user must read the TAP files and test/data: else run a readable copy
TREE=$ROOT
if [ -n "${GLINTRU_TAP_COPY:-}" ] || ! as_pg test -r "$ROOT/test/t/001_memory.pl" || ! as_pg test -r "$ROOT/test/data/small/model.safetensors"; then
  mkdir -p "$WORK/tree" && cp -r "$ROOT/test" "$WORK/tree/" && chmod -R a+rX "$WORK/tree"
  TREE=$WORK/tree
fi
files=()
if [ $# -gt 0 ]; then
  for f in "$@"; do files+=("$TREE/test/t/$(basename "$f")"); done
else
  for f in "$TREE"/test/t/*.pl; do files+=("$f"); done
fi

T0=$(date +%s%N)
(cd "$WORK" && as_pg env PATH="$PATH" PG_REGRESS="$PG_REGRESS" TESTDIR="$WORK" \
   prove -v -j "${GLINTRU_TAP_JOBS:-1}" -I "$PERL_LIB" "${files[@]}") >"$WORK/prove.out" 2>&1
rc=$?
sed "s/^/  /" "$WORK/prove.out"   # indented: only the ok:/FAILED: lines below start a line
ms=$(( ($(date +%s%N) - T0) / 1000000 ))

# translate: one ok:/FAILED: line per TAP test, FAILED for a file that did not pass
# (died, wrong plan) without a failing test to show for it
while IFS=$'\t' read -r kind text; do
  case "$kind" in
    ok) ok "$text" ;;
    bad) bad "$text" ;;
  esac
done < <(awk '
  function close_file() {
    if (cur != "" && !(cur in status)) status[cur] = "no result line"
    if (cur != "" && status[cur] != "ok" && nbad[cur] == 0)
      printf "bad\t%s: %s\n", cur, status[cur]
  }
  /^[^ ].*\.pl \.\.+( |$)/ {
    close_file()
    cur = $1; sub(/.*\//, "", cur); sub(/\.pl$/, "", cur); nbad[cur] = 0
    rest = $0; sub(/^[^ ]*\.pl \.\.+ ?/, "", rest)
    if (rest != "") status[cur] = rest
    next
  }
  cur == "" { next }
  /^ok [0-9]+/ { name = $0; sub(/^ok [0-9]+( - )?/, "", name); printf "ok\t%s: %s\n", cur, name; next }
  /^not ok [0-9]+/ { name = $0; sub(/^not ok [0-9]+( - )?/, "", name); printf "bad\t%s: %s\n", cur, name; nbad[cur]++; next }
  /^(ok|skipped.*)$/ { status[cur] = "ok"; next }
  /^(Dubious|Failed|All [0-9]+ subtests passed|Bailout|No subtests run|Parse errors)/ {
    if (!(cur in status) || status[cur] == "ok") status[cur] = $0 }
  END { close_file() }
' "$WORK/prove.out")
grep -q '^Result: PASS' "$WORK/prove.out" || [ "$failed" != 0 ] || bad "prove exited $rc without Result: PASS"
test_summary tap "$((ms / 1000)).$((ms % 1000 / 100)) s"
