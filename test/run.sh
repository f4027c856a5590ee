#!/usr/bin/env bash
# test/run.sh — build, install and test glintru against a throwaway cluster.
#
# Layers: C unit tests of the numeric core; pg_regress (test/sql, expected/)
# on a private cluster with shared_preload_libraries = glintru; the parity
# fixtures of ../shared/golden when that folder exists.  Prints one closing
# line "N passed, N failed" and exits non-zero on any failure.
#
# Run as root (PostgreSQL then runs as the postgres user) or as a user that
# may run initdb.  Needs the packages that .ci/run installs.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${GLINTRU_SHARED:-$ROOT/../shared}
export PATH=${GLINTRU_PGBIN:-/usr/lib/postgresql/15/bin}:$PATH
. test/lib.sh

LOGS=$(mktemp -d /tmp/glintru-run.XXXXXX)   # build and unit-test logs of this run
echo "== build (-Werror) and install"
make -s with_llvm=no GLINTRU_WERROR=-Werror >$LOGS/build.log 2>&1 \
  && make -s with_llvm=no install >>$LOGS/build.log 2>&1 \
  || { cat $LOGS/build.log; echo "0 passed, 1 failed"; exit 1; }
ok "build"

echo "== C unit tests"
if make -s GLINTRU_WERROR=-Werror build/test_forward >$LOGS/unit.log 2>&1; then
  out=$(build/test_forward test/data/small)
  echo "$out" | tail -2
  if echo "$out" | grep -q ' 0 failed'; then ok "unit: forward, safetensors round trip"; else bad "unit: forward"; fi
else
  cat $LOGS/unit.log; bad "unit tests build"
fi

echo "== training engine: gradient checks (float64 finite differences) and a smoke test"
if make -s GLINTRU_WERROR=-Werror build/test_grad build/test_train_smoke >$LOGS/train-unit.log 2>&1; then
  for t in build/test_grad build/test_train_smoke; do
    out=$("$t" 2>&1); rc=$?
    echo "$out" | tail -3
    if [ "$rc" = 0 ]; then ok "$t"; else bad "$t (exit $rc)"; echo "$out" | grep -iE "fail" | head -20; fi
  done
else
  cat $LOGS/train-unit.log; bad "training unit tests build"
fi

echo "== throwaway cluster"
. tools/cluster.sh
TMP=$(mktemp -d /tmp/glintru-test.XXXXXX)
cluster_start "$TMP" || { echo "$passed passed, $((failed + 1)) failed"; exit 1; }
cleanup() { cluster_stop "$TMP"; rm -rf "$TMP" "$LOGS"; }
trap cleanup EXIT
ok "cluster up (port $PGPORT, shared_preload_libraries=glintru)"

echo "== pg_regress"
# tests read test/data on the server side: give the server a copy it can read
if ! cluster_as_pg test -r "$ROOT/test/data/small/model.safetensors"; then
  cp -r "$ROOT/test/data" "$TMP/testdata" && chmod -R a+rX "$TMP/testdata"
  export GLINTRU_TEST_DATA="$TMP/testdata"
fi
make -s installcheck with_llvm=no >"$TMP/regress.log" 2>&1
cat "$TMP/regress.log" | grep -E '^(ok|not ok|test |     )' || cat "$TMP/regress.log"
np=$(grep -cE '^ok |^test .* \.\.\. ok|     [a-z_0-9]+ +\.\.\. ok' "$TMP/regress.log")
nf=$(grep -cE '^not ok |\.\.\. FAILED' "$TMP/regress.log")
[ -f test/regression.diffs ] && { cat test/regression.diffs | head -100; }
[ -f regression.diffs ] && { head -100 regression.diffs; }
[ -f output_iso/regression.diffs ] && { head -100 output_iso/regression.diffs; }
passed=$((passed + np)); failed=$((failed + nf))
if [ "$np" = 0 ] && [ "$nf" = 0 ]; then bad "pg_regress ran no test"; fi

echo "== shell-driven tests (concurrency, hot standby, crashes, Citus, fuzzing)"
# the Debian package (built, apt-installed, pg_regress against it) only when
# asked (CI does): it replaces this tree's make install with the package
pkg_test=""
[ "${GLINTRU_TEST_PACKAGE:-0}" = 1 ] && pkg_test=test/package.sh
for t in test/layers.sh test/concurrency.sh test/train_workers.sh test/tap.sh test/upgrade.sh test/app_python.sh test/citus.sh test/fuzz/run.sh $pkg_test; do
  if [ -f "$t" ]; then
    out=$(bash "$t" 2>&1); rc=$?
    echo "$out" | grep -E '^(ok|FAILED|skipped)' | sed "s|^|  |"
    n_ok=$(echo "$out" | grep -c '^ok'); n_bad=$(echo "$out" | grep -c '^FAILED')
    passed=$((passed + n_ok)); failed=$((failed + n_bad))
    [ "$rc" != 0 ] && [ "$n_bad" = 0 ] && bad "$t exited $rc" && echo "$out" | tail -20
  fi
done

echo "== parity with ../shared/golden"
if [ -d "$SHARED/golden" ]; then
  for fx in "$SHARED"/golden/*/; do
    fx=${fx%/}; name=$(basename "$fx")
    if [ -f "$fx/model.safetensors" ]; then
      res=$(psql -X -q -At -d postgres -c "CREATE EXTENSION IF NOT EXISTS glintru" \
              -v dir="$fx" -v model="golden_$name" -f test/parity.psql 2>&1 | tail -1)
      IFS='|' read -r cases uv top <<<"$res"
      if [ -n "$cases" ] && [ "$cases" -gt 0 ] 2>/dev/null && [ "$uv" = "$cases" ] && [ "$top" = "$cases" ]; then
        ok_n "$cases" "parity $name: $cases cases, user vectors and top-10 agree"
      else
        bad "parity $name: $res"
      fi
      out=$(build/test_forward "$fx" | tail -2); echo "$out"
      if echo "$out" | grep -q ' 0 failed'; then ok "unit parity $name (BLAS and plain loops)"; else bad "unit parity $name"; fi
    fi
  done
else
  echo "skipped: $SHARED/golden not found (a user's clone has no ../shared)"
fi

if ! cluster_as_pg pg_ctl -D "$TMP/data" status >/dev/null; then bad "server died during the tests"; cat "$TMP/server.log" | tail -30; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
