#!/usr/bin/env bash
# bench/load.sh — bounded mixed load (issue 6, item 4): 4 pgbench clients
# inserting events and asking for recommendations for SECONDS (60) on an
# attached table, then glintru_verify_state; and one connection making CALLS
# (1,000,000) recommend calls while its resident memory is sampled.
# Prints the errors seen, the throughput, the verification and the memory
# samples.  Not CI (minutes); stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_LOAD=${LOAD_SECONDS:-60}
CALLS=${CALLS:-1000000}
. tools/cluster.sh
DIR=$(mktemp -d /tmp/glintru-load.XXXXXX); chmod 755 "$DIR"
trap 'cluster_stop "$DIR"; rm -rf "$DIR"' EXIT
cluster_start "$DIR" || exit 1
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION glintru" \
  -c "CREATE TABLE events (user_id bigint, item_id bigint, ts bigint)" \
  -c "INSERT INTO events SELECT * FROM glintru_synthetic_interactions(2000, 600, 40)" \
  -c "CREATE INDEX ON events (user_id, ts)" \
  -c "CREATE SEQUENCE ts_seq START 1000" \
  -c "SET client_min_messages = warning" \
  -c "SELECT glintru_train('m', 'events', options => '{\"d\": 32, \"heads\": 2, \"max_seq_len\": 50, \"epochs\": 2}')" \
  -c "SELECT glintru_attach('m', 'events')" >/dev/null
cat > "$DIR/insert.sql" <<'SQL'
\set u random(1, 2500)
\set i random(1001, 1600)
INSERT INTO events VALUES (:u, :i, nextval('ts_seq'));
SQL
cat > "$DIR/recommend.sql" <<'SQL'
\set u random(1, 2500)
SELECT * FROM glintru_recommend(:u, 10);
SQL
echo "== mixed load: 4 clients, ${SECONDS_LOAD} s, inserts : recommends = 1 : 3"
pgbench -n -c 4 -j 2 -T "$SECONDS_LOAD" -M prepared -f "$DIR/insert.sql@1" -f "$DIR/recommend.sql@3" postgres 2>&1 \
  | grep -E "transactions actually processed|failed|tps|script|latency average|aborted" || true
echo "errors in the server log: $(grep -c ERROR "$DIR/server.log" || true)"
echo "users with a wrong state after the load: $(q -c "SELECT count(*) FROM glintru_verify_state('events')")"
echo "rows: $(q -c 'SELECT count(*) FROM events')"

echo "== memory of one backend over $CALLS recommend calls (RSS in kB, sampled every 5 s)"
cat > "$DIR/one.sql" <<'SQL'
\set u random(1, 2500)
SELECT * FROM glintru_recommend(:u, 10);
SQL
pgbench -n -c 1 -t "$CALLS" -M prepared -f "$DIR/one.sql" postgres > "$DIR/one.out" 2>&1 &
bench=$!; prev=-1
sleep 1
pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1")
while kill -0 "$bench" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo gone)
  echo "  t=$(date +%s) rss=${rss} kB"
  sleep 5
done
grep -E "transactions actually processed|tps|failed" "$DIR/one.out" || true
