#!/usr/bin/env bash
# test/package.sh — the Debian package end to end: build it (tools/package.sh),
# install it, and test what was installed: the file list, the dependency on the
# serial OpenBLAS, the linkage, the command-line tools in PostgreSQL's bindir,
# and the pg_regress/isolation suites (the tree's tests, the package's
# extension) on a throwaway cluster with glintru preloaded.
#
#   bash test/package.sh      # apt-get install ./postgresql-15-glintru_*.deb; the
#                             # system keeps the package installed afterwards
#   GLINTRU_PKG_INSTALL=relocated bash test/package.sh
#                             # leaves the system alone: unpacks the package into a
#                             # private relocated copy of PostgreSQL (removed at the end)
# Knobs: GLINTRU_PKG_DEB=FILE (test this .deb, do not build), GLINTRU_PKG_OUT=DIR
# (keep the built .deb files there).  Needs root.  Prints ok:/FAILED: lines and
# "package: N passed, N failed"; the exit status says whether all passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. test/lib.sh
. tools/cluster.sh
MODE=${GLINTRU_PKG_INSTALL:-apt}
SYS_PGC=/usr/lib/postgresql/15/bin/pg_config
OB_LIB=/usr/lib/x86_64-linux-gnu/openblas-serial
PKG=postgresql-15-glintru

TMP=$(mktemp -d /tmp/glintru-pkgtest.XXXXXX)
chmod 755 "$TMP"
cleanup() { cluster_stop "$TMP/cluster"; rm -rf "$TMP"; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] || { bad "test/package.sh needs root (apt, the postgres user)"; test_summary package; exit; }

echo "== build the package"
if [ -n "${GLINTRU_PKG_DEB:-}" ]; then
  deb=$(readlink -f "$GLINTRU_PKG_DEB")
else
  out=${GLINTRU_PKG_OUT:-$TMP/out}
  deb=$(bash tools/package.sh "$out" | grep "/${PKG}_[^/]*\.deb\$" | head -1)
fi
if [ -n "$deb" ] && [ -f "$deb" ]; then ok "package: $(basename "$deb")"; else bad "no $PKG .deb built"; test_summary package; exit; fi

echo "== contents and dependencies"
# where PGXS installs, as the system's pg_config says (the package must match)
BINDIR=$($SYS_PGC --bindir); PKGLIB=$($SYS_PGC --pkglibdir); SHARE=$($SYS_PGC --sharedir)
want="$PKGLIB/glintru.so $SHARE/extension/glintru.control $BINDIR/glintru-train $BINDIR/glintru-eval"
for s in sql/glintru--*.sql; do want="$want $SHARE/extension/$(basename "$s")"; done
files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||')
missing=""
for f in $want; do grep -qx "$f" <<<"$files" || missing="$missing $f"; done
if [ -z "$missing" ]; then ok "package holds $(wc -w <<<"$want") files: library, control, every sql/glintru--*.sql, both tools"
else bad "package lacks:$missing"; fi
depends=$(dpkg-deb -f "$deb" Depends)
if grep -qE '(^|, )libopenblas0-serial( |,|$)' <<<"$depends"; then ok "Depends names libopenblas0-serial ($depends)"
else bad "Depends does not name libopenblas0-serial: $depends"; fi

echo "== install ($MODE)"
if [ "$MODE" = relocated ]; then
  # a private copy of the PostgreSQL installation (as bench/lib.sh bench_build
  # makes one), the package's files unpacked into it
  R=$TMP/root
  mkdir -p "$R/usr/lib/postgresql/15" "$R/usr/share/postgresql"
  cp -a "$BINDIR" "$R$BINDIR"
  cp -as "$PKGLIB" "$R$PKGLIB"
  cp -as "$SHARE" "$R$SHARE"
  rm -f "$R$PKGLIB"/glintru.so "$R$SHARE"/extension/glintru* "$R$BINDIR"/glintru-*
  dpkg -x "$deb" "$R" && chmod 755 "$R"
  PGBIN=$R$BINDIR
  export PATH=$PGBIN:$PATH
  if [ "$("$PGBIN/pg_config" --pkglibdir)" = "$R$PKGLIB" ]; then ok "package unpacked into a relocated PostgreSQL copy ($R)"
  else bad "the relocated PostgreSQL copy does not resolve its own paths"; test_summary package; exit; fi
else
  export DEBIAN_FRONTEND=noninteractive
  # --reinstall: the same version may be installed already, its files since
  # overwritten by a make install (apt would then keep them as they are)
  if apt-get install -y --reinstall "$deb" >"$TMP/apt.log" 2>&1; then ok "apt-get install $(basename "$deb")"
  else tail -20 "$TMP/apt.log"; bad "apt-get install $(basename "$deb")"; test_summary package; exit; fi
  if dpkg -V "$PKG" >"$TMP/verify.log" 2>&1 && [ ! -s "$TMP/verify.log" ]; then ok "dpkg -V $PKG: installed files as packaged"
  else bad "dpkg -V $PKG: $(cat "$TMP/verify.log")"; fi
  R=""
  PGBIN=$BINDIR
fi
PGC=$PGBIN/pg_config

echo "== linkage: the serial OpenBLAS by rpath"
for f in "$R$PKGLIB/glintru.so" "$PGBIN/glintru-train" "$PGBIN/glintru-eval"; do
  dyn=$(readelf -d "$f" 2>&1); lib=$(ldd "$f" 2>&1 | awk '$1 == "libopenblas.so.0" {print $3}')
  if grep -q 'NEEDED.*\[libopenblas\.so\.0\]' <<<"$dyn" && grep -qE "(RUNPATH|RPATH).*\[$OB_LIB\]" <<<"$dyn" \
     && [ "${lib%/*}" = "$OB_LIB" ]; then
    ok "$(basename "$f"): NEEDED libopenblas.so.0, run path $OB_LIB, resolves to $lib"
  else
    bad "$(basename "$f") linkage: libopenblas.so.0 => ${lib:-not found}"; grep -E 'NEEDED|PATH' <<<"$dyn"
  fi
done

echo "== command-line tools in PostgreSQL's bindir"
for t in glintru-train glintru-eval; do
  if [ -x "$($PGC --bindir)/$t" ] && "$($PGC --bindir)/$t" --help 2>&1 | grep -q "^usage: $t"; then
    ok "$t --help (from $($PGC --bindir))"
  else bad "$t --help in $($PGC --bindir)"; fi
done

echo "== pg_regress against the installed package"
if cluster_start "$TMP/cluster"; then
  ok "cluster up (port $PGPORT, shared_preload_libraries=glintru)"
  # the server must run the package's library, not another copy
  so=$(awk '/glintru\.so/ {print $6; exit}' "/proc/$(head -1 "$TMP/cluster/data/postmaster.pid")/maps")
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$PKGLIB/glintru.so" >"$TMP/pkg.so"
  if [ "$so" = "$R$PKGLIB/glintru.so" ] && cmp -s "$so" "$TMP/pkg.so"; then ok "the server loaded the package's glintru.so ($so)"
  else bad "the server loaded ${so:-no glintru.so}, not the package's"; fi
  # the tests read test/data on the server side: give the server a copy it can read
  cp -r test/data "$TMP/testdata" && chmod -R a+rX "$TMP/testdata"
  export GLINTRU_TEST_DATA=$TMP/testdata
  rm -rf results output_iso regression.diffs regression.out
  make -s installcheck with_llvm=no PG_CONFIG="$PGC" >"$TMP/regress.log" 2>&1
  grep -E '^(ok|not ok|test |     )' "$TMP/regress.log" || cat "$TMP/regress.log"
  np=$(grep -cE '^ok |^test .* \.\.\. ok|     [a-z_0-9]+ +\.\.\. ok' "$TMP/regress.log")
  nf=$(grep -cE '^not ok |\.\.\. FAILED' "$TMP/regress.log")
  for d in regression.diffs output_iso/regression.diffs; do [ -f "$d" ] && head -100 "$d"; done
  if [ "$nf" = 0 ] && [ "$np" -gt 0 ]; then ok_n "$np" "pg_regress + isolation: $np tests passed against the package"
  else passed=$((passed + np)); bad "pg_regress + isolation: $nf of $((np + nf)) tests failed"; fi
  if ! cluster_as_pg "$PGBIN/pg_ctl" -D "$TMP/cluster/data" status >/dev/null; then
    bad "server died during the tests"; tail -30 "$TMP/cluster/server.log"
  fi
else
  bad "cluster start"
fi

test_summary package "$MODE install"
