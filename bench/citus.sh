#!/usr/bin/env bash
# bench/citus.sh — what serving through a Citus coordinator costs, beside a
# plain node, in one run (~1 minute).
#
#   bench/citus.sh            (as root, like test/run.sh, or as a user that may initdb)
#
# 1. builds a copy of the working tree into a private PostgreSQL tree
#    (bench/lib.sh; Citus must be installed: ../shared/vendor/citus/build.sh),
#    starts a plain node and a Citus coordinator with two workers on loopback
#    ports (citus.shard_count 8), loads the ml1m-shape model
#    (../shared/golden/ml1m-shape: 3,416 items, d 64, 4 heads) on the plain
#    node and on the coordinator, and the same 2,000 users × 30 events (50
#    random known items, bench/score_bench.c hist) into an attached table on
#    both (distributed by user_id on Citus);
# 2. pgbench, one client, over TCP on 127.0.0.1 to both, alternating plain and
#    Citus BENCH_ROUNDS times (BENCH_SECONDS each) and taking each one's median:
#      - SELECT * FROM glintru_recommend(:u, 10)             routed by Citus to the user's worker
#        (simple protocol, and as a prepared statement)
#      - … FROM generate_series(:u, :u) u, LATERAL glintru_recommend(u, 10)
#                                                             forwarded by glintru on the coordinator
#      - glintru_recommend_batch of 100 random users          split by shard, one call per worker
#      - a single-row INSERT                                  the trigger on the worker's shard
#    and prints ms per call on each with the ratio coordinator / plain.
#    synchronous_commit is off on every node: the INSERT row measures the
#    work and the round trips, not the disk's flush.
# Timings come from one noisy machine and are printed, never judged.
#
# Knobs: GLINTRU_SHARED (default ../shared), BENCH_SECONDS (default 3), BENCH_ROUNDS (default 3), BENCH_PORT (first of
# four ports), BENCH_SEED, BENCH_REV=<git rev>, GLINTRU_BENCH_BUILD=0, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${GLINTRU_SHARED:-$ROOT/../shared}
MODEL=$SHARED/golden/ml1m-shape/model.safetensors
SECS=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-3}
SEED=${BENCH_SEED:-4242}
. bench/lib.sh

[ -f "$MODEL" ] || { echo "missing $MODEL (set GLINTRU_SHARED)" >&2; exit 1; }
[ -f "$(pg_config --pkglibdir)/citus.so" ] || { echo "Citus is not installed: bash $SHARED/vendor/citus/build.sh" >&2; exit 1; }

bench_init citus
bench_build
bench_score_tool
H=$($SB hist "$MODEL" "$SEED" 50 | tr ' ' ',')
cp "$MODEL" "$W/model.safetensors" && chmod a+r "$W/model.safetensors"

BASE=${BENCH_PORT:-$((30000 + RANDOM % 20000))}
PLAIN=$BASE COORD=$((BASE + 1)) W1=$((BASE + 2)) W2=$((BASE + 3))
NODES="$PLAIN $COORD $W1 $W2"
stop_nodes() {
  for p in $NODES; do as_pg "$PGBIN/pg_ctl" -D "$W/n$p" -m immediate stop >/dev/null 2>&1 || true; done
  bench_cleanup
}
trap stop_nodes EXIT

# node_start PORT PRELOAD: a cluster on 127.0.0.1:PORT
node_start() {
  [ "$(id -u)" = 0 ] && chown postgres "$W"
  as_pg "$PGBIN/initdb" -D "$W/n$1" -U postgres -A trust --no-sync >"$W/initdb.log" 2>&1 || { cat "$W/initdb.log"; exit 1; }
  cat >>"$W/n$1/postgresql.conf" <<CONF
port = $1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W'
shared_preload_libraries = '$2'
max_prepared_transactions = 50
synchronous_commit = off
citus.shard_count = 8
CONF
  as_pg "$PGBIN/pg_ctl" -D "$W/n$1" -l "$W/n$1.log" -w start >/dev/null || { tail -20 "$W/n$1.log"; exit 1; }
}
qn() { local p=$1; shift; "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$p" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

log "nodes: plain $PLAIN, coordinator $COORD, workers $W1 $W2"
node_start $PLAIN glintru
for p in $COORD $W1 $W2; do node_start $p citus,glintru; done
qn $W1 -c "CREATE EXTENSION citus"
qn $W2 -c "CREATE EXTENSION citus"
qn $COORD -c "CREATE EXTENSION citus" -c "SELECT citus_set_coordinator_host('127.0.0.1', $COORD)" \
  -c "SELECT citus_add_node('127.0.0.1', $W1)" -c "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null
for p in $PLAIN $COORD; do
  qn $p -c "CREATE EXTENSION glintru" -c "SELECT glintru_load_model_file('m', '$W/model.safetensors')" \
    -c "CREATE TABLE events (user_id bigint, item_id bigint, ts bigint)" -c "CREATE INDEX ON events (user_id, ts)" >/dev/null
done
qn $COORD -c "SELECT create_distributed_table('events', 'user_id')" >/dev/null
for p in $PLAIN $COORD; do
  qn $p -c "INSERT INTO events SELECT u, ('{$H}'::bigint[])[1 + (u * 7 + t * 3) % 50], t FROM generate_series(1, 2000) u, generate_series(0, 29) t" \
    -c "SELECT glintru_attach('m', 'events', order_column => 'ts')" >/dev/null
done
same=$(for p in $PLAIN $COORD; do qn $p -c "SELECT string_agg(item_id || ':' || score, ' ') FROM glintru_recommend(17, 10)"; done | uniq | wc -l)
log "model and 60,000 events on both; user 17's top-10 identical on both: $([ "$same" = 1 ] && echo yes || echo NO)"

cat >"$W/rec.sql" <<'SQL'
\set u random(1, 2000)
SELECT * FROM glintru_recommend(:u, 10);
SQL
cat >"$W/rec_fwd.sql" <<'SQL'
\set u random(1, 2000)
SELECT count(*) FROM generate_series(:u, :u) u, LATERAL glintru_recommend(u, 10);
SQL
cat >"$W/batch.sql" <<'SQL'
\set u random(1, 1900)
SELECT count(*) FROM glintru_recommend_batch(ARRAY(SELECT generate_series(:u, :u + 99))::bigint[], 10);
SQL
cat >"$W/insert.sql" <<'SQL'
\set u random(1, 2000)
\set i random(1, 50)
INSERT INTO events VALUES (:u, 0 + :i, 1000000 + :client_id);
SQL
# the insert's items: the model's ids, not 1..50
sed -i "s/0 + :i/('{$H}'::bigint[])[:i]/" "$W/insert.sql"

# ms per call of a pgbench script on a node (one client, SECS seconds)
ms() { "$PGBIN/pgbench" -n -c 1 -T "$SECS" -M "${3:-simple}" -f "$W/$2" -h 127.0.0.1 -p "$1" -U postgres postgres 2>&1 \
         | awk '/latency average/ { print $4 }'; }

# the median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '\n%-58s %12s %12s %8s\n' "call (one client, TCP on 127.0.0.1)" "plain ms" "Citus ms" "ratio"
for row in "glintru_recommend(u, 10), SELECT * (routed by Citus)|rec.sql|simple" \
           "the same as a prepared statement (-M prepared)|rec.sql|prepared" \
           "glintru_recommend(u, 10) inside a query (forwarded)|rec_fwd.sql|simple" \
           "glintru_recommend_batch of 100 users (one call per worker)|batch.sql|simple" \
           "single-row INSERT (the trigger on the shard)|insert.sql|simple"; do
  IFS='|' read -r name f mode <<<"$row"
  as="" bs=""
  for r in $(seq 1 "$ROUNDS"); do as="$as $(ms $PLAIN "$f" "$mode")"; bs="$bs $(ms $COORD "$f" "$mode")"; done
  a=$(median $as); b=$(median $bs)
  printf '%-58s %12s %12s %7.2fx\n' "$name" "$a" "$b" "$(echo "$b $a" | awk '{ print $1 / $2 }')"
done
v=$(qn $COORD -c "SELECT count(*) FROM glintru_verify_state('events')")
echo
echo "medians of $ROUNDS rounds of ${SECS} s; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "after the inserts, glintru_verify_state('events') on the coordinator: $v problems; $SRCDESC; $(date -u +%F)"
