# bench/lib.sh — source it: what every benchmark shares.  A work dir, a
# private build of the tree installed into a relocated copy of the PostgreSQL
# 15 installation under it (the system-wide install is left alone), and a
# throwaway cluster on a private port and socket dir.
#
#   bench_init NAME            → W (work dir), log(), as_pg(), q(), cleanup trap
#   bench_build [DIRS...]      → a copy of the tree (or of $BENCH_REV / $BENCH_SRC)
#                                in $SRC, installed into $W/pg; sets PGBIN, SRCDESC
#   bench_copy DIR, bench_install DIR → the same copy into DIR; build DIR and
#                                install it into $W/pg over what is there
#   bench_cluster [SETTINGS...] → the cluster, started; exports PGHOST PGPORT PGUSER PGDATABASE
#   bench_stop, bench_start    → stop it, start it again with the same settings
#
# Knobs: BENCH_REV=<git rev>, BENCH_SRC=<dir with Makefile, sql/, src/>,
# GLINTRU_BENCH_BUILD=0 (use the system-wide install), BENCH_PORT, BENCH_KEEP=1.
export PATH=/usr/lib/postgresql/15/bin:$PATH
PGBIN=$(pg_config --bindir)   # replaced by the private copy in bench_build
OB_INC=/usr/include/x86_64-linux-gnu/openblas-serial
OB_LIB=/usr/lib/x86_64-linux-gnu/openblas-serial
T_START=$(date +%s)
STARTED=0

# A progress line on stderr, with the seconds since the start.
log() { echo "[$(($(date +%s) - T_START))s] $*" >&2; }
# Run a command as the postgres user when root (PostgreSQL refuses root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# psql, unaligned, tuples only, stop at the first error.
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Stop the cluster and remove the work dir (kept with BENCH_KEEP=1).
bench_cleanup() {
  if [ "$STARTED" = 1 ]; then as_pg "$PGBIN/pg_ctl" -D "$W/data" -m fast stop >/dev/null 2>&1 || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}

# Make the work dir /tmp/glintru-NAME.XXXXXX and arrange its cleanup.
bench_init() {
  W=$(mktemp -d "/tmp/glintru-$1.XXXXXX")
  chmod 755 "$W"
  trap bench_cleanup EXIT
}

# Copy the tree (or $BENCH_REV, or $BENCH_SRC) into DIR; sets SRCDESC.
bench_copy() {
  mkdir -p "$1"
  if [ -n "${BENCH_REV:-}" ]; then
    git -C "$ROOT" archive "$BENCH_REV" Makefile glintru.control sql src tools test/unit | tar -x -C "$1"
    SRCDESC="git revision $BENCH_REV ($(git -C "$ROOT" rev-parse --short "$BENCH_REV"))"
  else
    local from=${BENCH_SRC:-$ROOT}
    cp -r "$from/Makefile" "$from/glintru.control" "$from/sql" "$from/src" "$from/tools" "$1/"
    find "$1/src" \( -name '*.o' -o -name '*.bc' \) -delete
    if [ -n "${BENCH_SRC:-}" ]; then
      SRCDESC="copy of $BENCH_SRC (BENCH_SRC)"
    else
      SRCDESC="working tree of $ROOT ($(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src sql Makefile || echo ' + local changes'))"
    fi
  fi
}

# Build the tree in DIR and install it into the private PostgreSQL tree $W/pg
# (over what is there); the build's output in $W/build.log.
bench_install() {
  { make -C "$1" with_llvm=no && make -C "$1" with_llvm=no install DESTDIR="$W/pg"; } \
    >"$W/build.log" 2>&1 || { cat "$W/build.log"; exit 1; }
}

# Copy the tree into $W/src and install it into a private PostgreSQL tree.
bench_build() {
  SRC=$W/src
  bench_copy "$SRC"
  log "source: $SRCDESC"
  if [ "${GLINTRU_BENCH_BUILD:-1}" != 0 ]; then
    log "build + install the extension into a private PostgreSQL tree ($W/pg)"
    local pgroot=$W/pg/usr
    mkdir -p "$pgroot/lib/postgresql/15" "$pgroot/share/postgresql"
    cp -a "$PGBIN" "$pgroot/lib/postgresql/15/bin"          # real copies: paths resolve from here
    cp -as "$(pg_config --pkglibdir)" "$pgroot/lib/postgresql/15/lib"
    cp -as "$(pg_config --sharedir)" "$pgroot/share/postgresql/15"
    rm -f "$pgroot"/lib/postgresql/15/lib/glintru.so "$pgroot"/share/postgresql/15/extension/glintru*
    bench_install "$SRC"
    PGBIN=$pgroot/lib/postgresql/15/bin
    [ "$("$PGBIN/pg_config" --sharedir)" = "$pgroot/share/postgresql/15" ] \
      || { echo "relocated PostgreSQL copy does not resolve its own paths" >&2; exit 1; }
  else
    log "GLINTRU_BENCH_BUILD=0: using the extension installed in $PGBIN"
  fi
  mkdir -p "$W/bin"
}

# Link a benchmark's C driver (bench/NAME.c) against the core objects as the
# extension's Makefile builds them (same per-file flags), without the glue.
bench_core_tool() {
  local objs
  objs=$(cd "$SRC" && ls src/core/*.c | sed 's/\.c$/.o/')
  # shellcheck disable=SC2086  # a list of objects
  make -C "$SRC" with_llvm=no $objs >>"$W/build.log" 2>&1 || { cat "$W/build.log"; exit 1; }
  # shellcheck disable=SC2046
  cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$OB_INC" -I"$SRC/src/core" "$ROOT/bench/$1.c" \
    $(printf "$SRC/%s " $objs) -L"$OB_LIB" -Wl,-rpath,"$OB_LIB" -lopenblas -lm -lpthread -o "$W/bin/$1"
}

# bench/score_bench.c linked as bench_core_tool does: $SB, the work dir readable by the server.
bench_score_tool() {
  bench_core_tool score_bench
  SB=$W/bin/score_bench
  if [ "$(id -u)" = 0 ]; then chown postgres "$W"; fi
}

# initdb and start the throwaway cluster with glintru preloaded and the given settings.
bench_cluster() {
  [ "$(id -u)" = 0 ] && chown postgres "$W"
  local port=${BENCH_PORT:-$((20000 + RANDOM % 20000))}
  BENCH_OPTS="-p $port -k $W -c listen_addresses='' -c shared_preload_libraries=glintru"
  for o in "$@"; do BENCH_OPTS="$BENCH_OPTS -c $o"; done
  log "throwaway cluster on port $port, socket dir $W"
  as_pg "$PGBIN/initdb" -D "$W/data" -U postgres -A trust --no-sync >"$W/initdb.log" 2>&1 \
    || { cat "$W/initdb.log"; exit 1; }
  bench_start
  PORT=$port
  export PGHOST=$W PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

# Start the cluster (again) with the options bench_cluster gave it.
bench_start() {
  as_pg "$PGBIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w -o "$BENCH_OPTS" start >/dev/null \
    || { cat "$W/server.log"; exit 1; }
  STARTED=1
}

# Stop the cluster (fast shutdown), e.g. to install another build into $W/pg.
bench_stop() {
  as_pg "$PGBIN/pg_ctl" -D "$W/data" -m fast -w stop >/dev/null
  STARTED=0
}
