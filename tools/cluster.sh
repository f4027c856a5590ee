# tools/cluster.sh — source it: a throwaway PostgreSQL 15 cluster with glintru
# preloaded, on a private port and socket directory (no system service).
#   cluster_start DIR [extra postgres -c settings...]  → exports PGHOST PGPORT PGUSER
#   cluster_stop DIR
# As root the server runs as the postgres user (PostgreSQL refuses root).
export PATH=${GLINTRU_PGBIN:-/usr/lib/postgresql/15/bin}:$PATH

cluster_as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cluster_start() {
  local dir=$1; shift
  local port=${GLINTRU_PORT:-$((20000 + RANDOM % 20000))}
  local opts="-p $port -k $dir -c listen_addresses='' -c shared_preload_libraries=glintru -c fsync=off"
  for o in "$@"; do opts="$opts -c $o"; done
  mkdir -p "$dir" && chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  cluster_as_pg initdb -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; return 1; }
  cluster_as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w -o "$opts" start >/dev/null \
    || { tail -20 "$dir/server.log"; return 1; }
  export PGHOST=$dir PGPORT=$port PGUSER=postgres
}

cluster_stop() {
  cluster_as_pg pg_ctl -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}
