#!/usr/bin/env bash
# test/citus.sh — glintru on a real Citus cluster: a coordinator and two
# workers (a third added later) on loopback ports, beside a plain node that
# gets the same SQL.  Every write kind goes through the coordinator, and the
# coordinator's recommendations must equal the plain node's, ids and scores,
# for every user: after the writes, a shard move, a rebalance, a model
# replaced while another session recommends, a worker restart, a shard
# split, and in both refresh modes.  Also: models on every node with the same id and version, a
# load refused by one worker leaving every node as it was, a node added
# later synced, detach and DROP TABLE cleaning every node.
#
# Needs ../shared/vendor/citus (the Citus 13.2.2 source; skipped with a
# message when it is missing); builds Citus from it when citus.so is not
# installed (as root: build.sh installs build packages).  As root or as a
# user that may run initdb.  Prints ok:/FAILED: lines; about a minute.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${GLINTRU_SHARED:-$ROOT/../shared}
export PATH=${GLINTRU_PGBIN:-/usr/lib/postgresql/15/bin}:$PATH
. test/lib.sh
. tools/cluster.sh

if [ ! -d "$SHARED/vendor/citus" ]; then
  echo "skipped: $SHARED/vendor/citus not found (Citus is not packaged for Debian 12; a user's clone has no ../shared)"
  exit 0
fi
if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "skipped: citus.so is not installed and building it needs root (bash $SHARED/vendor/citus/build.sh)"
    exit 0
  fi
  echo "== building Citus 13.2.2 (../shared/vendor/citus/build.sh)"
  PG_CONFIG=$(command -v pg_config) bash "$SHARED/vendor/citus/build.sh" >/tmp/citus-build.$$.log 2>&1 \
    || { tail -20 /tmp/citus-build.$$.log; bad "Citus build"; test_summary citus; exit 1; }
  rm -f /tmp/citus-build.$$.log
fi
so_guard_start

TMP=$(mktemp -d /tmp/glintru-citus.XXXXXX)
chmod 755 "$TMP"
BASE=${GLINTRU_CITUS_PORT:-$((30000 + RANDOM % 20000))}
PLAIN=$BASE COORD=$((BASE + 1)) W1=$((BASE + 2)) W2=$((BASE + 3)) W3=$((BASE + 4))
NODES="$PLAIN $COORD $W1 $W2 $W3"
BG=""
cleanup() {
  [ -n "$BG" ] && kill "$BG" 2>/dev/null
  for p in $NODES; do cluster_as_pg pg_ctl -D "$TMP/n$p/data" -m immediate stop >/dev/null 2>&1; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# the model file, readable by the servers
mkdir -p "$TMP/data" && cp test/data/small/model.safetensors "$TMP/data/" && chmod -R a+rX "$TMP/data"
MODEL=$TMP/data/model.safetensors

# node_start PORT PRELOAD: a cluster on 127.0.0.1:PORT
node_start() {
  local dir=$TMP/n$1
  mkdir -p "$dir" && chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  cluster_as_pg initdb -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; return 1; }
  cat >>"$dir/data/postgresql.conf" <<CONF
port = $1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = '$2'
fsync = off
max_prepared_transactions = 50
max_connections = 80
wal_level = logical
citus.shard_count = 8
CONF
  cluster_as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null || { tail -20 "$dir/server.log"; return 1; }
}
# q PORT psql-args…: psql on a node, stopping at the first error
q() { local p=$1; shift; psql -X -q -At -h 127.0.0.1 -p "$p" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
# both FILE NAME: run a SQL file on the plain node and on the coordinator; ok if the outputs agree
both() {
  q $PLAIN -f "$1" >"$TMP/plain.out" 2>&1; local rp=$?
  q $COORD -f "$1" >"$TMP/coord.out" 2>&1; local rc=$?
  if [ $rp = 0 ] && [ $rc = 0 ] && cmp -s "$TMP/plain.out" "$TMP/coord.out"; then
    ok "$2: coordinator = plain node ($(wc -l <"$TMP/coord.out") lines)"
  else
    bad "$2: the coordinator differs from the plain node (exit $rp / $rc)"; diff "$TMP/plain.out" "$TMP/coord.out" | head -${GLINTRU_DIFF_LINES:-20}
  fi
}
# every user's top-5 (ids and scores) three ways, and the states verified: must be equal on both
cat >"$TMP/recs.sql" <<'SQL'
SELECT u, string_agg(r.item_id || ':' || r.score, ' ') FROM generate_series(1, 64) u,
  LATERAL (SELECT * FROM glintru_recommend(u, 5)) r GROUP BY u ORDER BY u;
-- the batch: glintru_recommend's items, scores within the float round-off of a GEMM (README: 1e-5)
SELECT 'batch', count(*), count(r.item_id), coalesce(bool_and(abs(b.score - r.score) <= 1e-5), false)
  FROM glintru_recommend_batch(ARRAY(SELECT generate_series(1, 64))::bigint[], 5) b
  LEFT JOIN LATERAL (SELECT * FROM glintru_recommend(b.user_id, 5)) r ON r.item_id = b.item_id;
SELECT 'verify', count(*) FROM glintru_verify_state('events');
SQL
for u in $(seq 1 64); do echo "SELECT $u, * FROM glintru_recommend($u, 5);"; done >>"$TMP/recs.sql"
# check_same NAME: recommendations on the coordinator = the plain node's, and no state problem
check_same() {
  both "$TMP/recs.sql" "$1"
  grep -q '^verify|0$' "$TMP/coord.out" || bad "$1: glintru_verify_state found problems on the coordinator: $(grep '^verify' "$TMP/coord.out")"
  grep -q '^batch|320|320|t$' "$TMP/coord.out" || bad "$1: glintru_recommend_batch on the coordinator: $(grep '^batch' "$TMP/coord.out") (want 320 rows, all glintru_recommend's)"
}
# models PORT: the node's models as id|version|name|checksum
models() { q "$1" -c "SELECT string_agg(id || '|' || version || '|' || name || '|' || checksum, ' ' ORDER BY id) FROM glintru.models"; }
# same_models NAME PORTS…: every node has the coordinator's models
same_models() {
  local name=$1 want; shift; want=$(models $COORD); local diff=""
  for p in "$@"; do [ "$(models "$p")" = "$want" ] || diff="$diff $p:$(models "$p")"; done
  [ -z "$diff" ] && [ -n "$want" ] && ok "$name: every node has the coordinator's models ($want)" \
    || bad "$name: models differ from the coordinator's ($want):$diff"
}

echo "== clusters: a plain node, a Citus coordinator and two workers (ports $PLAIN, $COORD, $W1, $W2)"
node_start $PLAIN glintru && node_start $COORD citus,glintru && node_start $W1 citus,glintru && node_start $W2 citus,glintru \
  || { bad "clusters start"; test_summary citus; exit 1; }
q $W1 -c "CREATE EXTENSION citus" && q $W2 -c "CREATE EXTENSION citus" \
  && q $COORD -c "CREATE EXTENSION citus" -c "SELECT citus_set_coordinator_host('127.0.0.1', $COORD)" \
       -c "SELECT citus_add_node('127.0.0.1', $W1)" -c "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null \
  && q $COORD -c "CREATE EXTENSION glintru" && q $PLAIN -c "CREATE EXTENSION glintru" \
  && ok "Citus cluster up; CREATE EXTENSION glintru on the coordinator reached the workers ($(q $W1 -c "SELECT extversion FROM pg_extension WHERE extname = 'glintru'"))" \
  || { bad "Citus cluster setup"; test_summary citus; exit 1; }

echo "== models on every node, atomically"
for p in $PLAIN $COORD; do q $p -c "SELECT glintru_load_model_file('m', '$MODEL')" >/dev/null; done
same_models "load on the coordinator" $W1 $W2
out=$(q $W1 -c "SELECT glintru_load_model_file('m2', '$MODEL')" 2>&1)
echo "$out" | grep -q "cannot load a model on a Citus worker" && ok "a worker refuses a load of its own" || bad "load on a worker: $out"
before=$(for p in $COORD $W1 $W2; do models $p; done)
# worker 2 refuses every write to its glintru.models: the load must fail everywhere
q $W2 -c "SET citus.enable_ddl_propagation TO off" -c "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN RAISE EXCEPTION 'worker 2 refuses'; END\$\$" \
      -c "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON glintru.models FOR EACH ROW EXECUTE FUNCTION refuse()"
out=$(q $COORD -c "SELECT glintru_load_model_file('m2', '$MODEL')" 2>&1)
out2=$(q $COORD -c "SELECT glintru_load_model_file('m', '$MODEL', replace => true)" 2>&1)
after=$(for p in $COORD $W1 $W2; do models $p; done)
if echo "$out" | grep -q "worker 2 refuses" && echo "$out2" | grep -q "worker 2 refuses" && [ "$before" = "$after" ]; then
  ok "a load and a replacement refused by one worker leave every node as it was (2PC)"
else
  bad "failure atomicity: $out / $out2; before: $before; after: $after"
fi
q $W2 -c "SET citus.enable_ddl_propagation TO off" -c "DROP TRIGGER refuse ON glintru.models" -c "DROP FUNCTION refuse()"

echo "== a distributed table attached on the coordinator"
for p in $PLAIN $COORD; do q $p -c "CREATE TABLE events (user_id bigint, item_id bigint, ts bigint)" -c "CREATE INDEX ON events (user_id, ts)"; done
q $COORD -c "SELECT create_distributed_table('events', 'user_id')" >/dev/null || bad "create_distributed_table"
cat >"$TMP/setup.sql" <<'SQL'
-- 64 users, 2 to 11 events each (L = 5): histories shorter and longer than the window
INSERT INTO events SELECT user_id, 103 + 3 * (item_id % 30), ts
  FROM glintru_synthetic_interactions(64, 300, 12, 7) WHERE ts < 2 + user_id % 10;
SELECT glintru_attach('m', 'events', order_column => 'ts');
SQL
both "$TMP/setup.sql" "glintru_attach on the distributed table: the same user count"
n_att=$(for p in $W1 $W2; do q $p -c "SELECT count(*) FROM glintru.attachments WHERE shard_id IS NOT NULL"; done | awk '{ s += $1 } END { print s }')
n_trg=$(for p in $W1 $W2; do q $p -c "SELECT count(*) FROM pg_trigger WHERE tgname IN ('glintru_insert', 'glintru_update', 'glintru_delete', 'glintru_truncate')"; done | awk '{ s += $1 } END { print s }')
[ "$n_att" = 8 ] && [ "$n_trg" = 32 ] && ok "every shard placement attached on its worker (8 attachments, 32 triggers)" \
  || bad "shard attachments: $n_att attachments, $n_trg triggers (want 8, 32)"
check_same "recommendations after attach"
err=$(q $COORD -c "SET citus.shard_count = 4" -c "CREATE TABLE other (user_id bigint, item_id bigint, ts bigint)" \
        -c "SELECT create_distributed_table('other', 'user_id')" -c "SELECT glintru_attach('m', 'other', order_column => 'ts')" 2>&1)
echo "$err" | grep -q "table other is not co-located with events" && ok "a distributed table of another co-location group is refused" \
  || bad "attach of a table not co-located: $err"
q $COORD -c "DROP TABLE IF EXISTS other"

echo "== every kind of write through the coordinator"
cat >"$TMP/writes.sql" <<'SQL'
INSERT INTO events VALUES (1, 142, 100);
INSERT INTO events VALUES (2, 118, 100), (3, 133, 100), (40, 160, 100), (41, 190, 100);
COPY events FROM STDIN;
4	103	100
4	106	101
5	109	100
50	112	100
51	115	100
\.
-- INSERT … SELECT of co-located rows (pushed down to the shards) and from a function (through the coordinator)
INSERT INTO events SELECT user_id, item_id, ts + 200 FROM events WHERE ts = 1 AND user_id <= 30;
INSERT INTO events SELECT u, 103 + 3 * (u % 30), 300 FROM generate_series(1, 64, 3) u;
-- … and one Citus repartitions (each row to another user's shard)
INSERT INTO events SELECT user_id % 64 + 1, item_id, ts + 900 FROM events WHERE ts = 0;
-- out of order (older than the user's latest event) and a tie
INSERT INTO events VALUES (6, 121, 0), (7, 124, 1);
UPDATE events SET item_id = 106 WHERE user_id % 7 = 0 AND ts = 2;
DELETE FROM events WHERE user_id % 11 = 0 AND ts = 3;
BEGIN; INSERT INTO events VALUES (8, 127, 400), (9, 130, 400); ROLLBACK;
-- one transaction over many shards (two-phase commit), with a read of its own write
BEGIN;
INSERT INTO events SELECT u, 103 + 3 * ((u * 7) % 30), 500 FROM generate_series(10, 64, 2) u;
INSERT INTO events VALUES (12, 136, 501);
SELECT * FROM glintru_recommend(12, 5);
SELECT u, r.* FROM generate_series(12, 14) u, LATERAL glintru_recommend(u, 3) r;
SELECT 'batch', count(*), count(r.item_id), coalesce(bool_and(abs(b.score - r.score) <= 1e-5), false)
  FROM glintru_recommend_batch(ARRAY[12, 10, 14, 40]::bigint[], 3) b
  LEFT JOIN LATERAL (SELECT * FROM glintru_recommend(b.user_id, 3)) r ON r.item_id = b.item_id;
COMMIT;
SQL
both "$TMP/writes.sql" "single-row, multi-row, COPY, INSERT … SELECT (pushed down, through the coordinator, repartitioned), out of order, UPDATE, DELETE, ROLLBACK, multi-shard 2PC"
check_same "recommendations after every write kind"
# a prepared statement past the five custom plans, and PL/pgSQL: the user id is then a parameter
{ echo "PREPARE rec(bigint) AS SELECT * FROM glintru_recommend(\$1, 5);"
  for u in 3 9 14 22 31 40 47 55 63; do echo "EXECUTE rec($u);"; done
  echo "DO \$\$ DECLARE r record; BEGIN FOR u IN 1 .. 64 LOOP FOR r IN SELECT * FROM glintru_recommend(u, 5) LOOP RAISE NOTICE '% % %', u, r.item_id, r.score; END LOOP; END LOOP; END \$\$;"
} >"$TMP/prepared.sql"
both "$TMP/prepared.sql" "a prepared statement (9 executions) and a PL/pgSQL loop over every user"

echo "== never silent"
out=$(q $W1 -c "SELECT relid::regclass FROM glintru.attachments WHERE shard_id IS NOT NULL LIMIT 1")
err=$(q $W1 -c "BEGIN" -c "SET LOCAL citus.enable_manual_changes_to_shards TO on" -c "DELETE FROM glintru.attachments WHERE relid = '$out'::regclass" -c "INSERT INTO $out VALUES (1, 103, 9999)" 2>&1)
echo "$err" | grep -q "has glintru's trigger but is not attached" && ok "a trigger firing on a shard without attachment is an error" \
  || bad "write to an unattached shard: $err"

echo "== a shard move, then glintru_citus_sync()"
shard=$(q $COORD -c "SELECT shardid FROM citus_shards WHERE table_name = 'events'::regclass AND nodeport = $W1 ORDER BY shardid LIMIT 1")
u_moved=$(q $COORD -c "SELECT u FROM generate_series(1, 64) u WHERE get_shard_id_for_distribution_column('events', u) = $shard LIMIT 1")
q $COORD -c "SELECT citus_move_shard_placement($shard, '127.0.0.1', $W1, '127.0.0.1', $W2, shard_transfer_mode => 'block_writes')" >/dev/null \
  && ok "shard $shard moved from $W1 to $W2" || bad "citus_move_shard_placement"
err=$(q $COORD -c "SELECT * FROM glintru_recommend($u_moved, 5)" 2>&1)
echo "$err" | grep -q "is not attached on this node" && ok "before the sync, a user of the moved shard gets an error, not stale items" \
  || bad "recommend for a user of the moved shard before the sync: $err"
q $COORD -c "SELECT glintru_citus_sync()" >/dev/null && ok "glintru_citus_sync() after the move" || bad "glintru_citus_sync()"
cat >"$TMP/writes2.sql" <<'SQL'
INSERT INTO events SELECT u, 103 + 3 * ((u * 11) % 30), 600 FROM generate_series(1, 64) u;
UPDATE events SET ts = ts + 1 WHERE user_id % 5 = 0 AND ts = 600;
DELETE FROM events WHERE user_id % 13 = 0 AND ts = 0;
SQL
both "$TMP/writes2.sql" "writes after the move"
check_same "recommendations after the move"

echo "== a rebalance onto a third worker added later, then glintru_citus_sync()"
node_start $W3 citus,glintru && q $W3 -c "CREATE EXTENSION citus" && q $COORD -c "SELECT citus_add_node('127.0.0.1', $W3)" >/dev/null \
  || bad "third worker"
q $COORD -c "SELECT glintru_citus_sync()" >/dev/null && ok "glintru_citus_sync() after citus_add_node" || bad "glintru_citus_sync() after citus_add_node"
same_models "the node added later" $W1 $W2 $W3
q $COORD -c "SELECT rebalance_table_shards('events', shard_transfer_mode => 'block_writes')" >/dev/null 2>"$TMP/rebalance.err" \
  && ok "rebalance_table_shards: shards per worker now $(q $COORD -c "SELECT string_agg(n::text, '/' ORDER BY nodeport) FROM (SELECT nodeport, count(*) n FROM citus_shards WHERE table_name = 'events'::regclass GROUP BY 1) s")" \
  || { bad "rebalance_table_shards"; cat "$TMP/rebalance.err"; }
q $COORD -c "SELECT glintru_citus_sync()" >/dev/null && ok "glintru_citus_sync() after the rebalance" || bad "glintru_citus_sync() after the rebalance"
sed 's/600/700/g' "$TMP/writes2.sql" >"$TMP/writes3.sql"
both "$TMP/writes3.sql" "writes after the rebalance"
check_same "recommendations after the rebalance"

echo "== a shard split, then glintru_citus_sync()"
split=$(q $COORD -c "SELECT s.shardid || ' ' || ((s.shardminvalue::bigint + s.shardmaxvalue::bigint) / 2) FROM pg_dist_shard s WHERE logicalrelid = 'events'::regclass ORDER BY shardid LIMIT 1")
nodes=$(q $COORD -c "SELECT string_agg(nodeid::text, ',' ORDER BY nodeport) FROM pg_dist_node WHERE nodeport IN ($W1, $W3)")
q $COORD -c "SELECT citus_split_shard_by_split_points(${split% *}, ARRAY['${split#* }'], ARRAY[$nodes], 'block_writes')" >/dev/null 2>"$TMP/split.err" \
  && ok "shard ${split% *} split at hash ${split#* } onto two workers ($(q $COORD -c "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'events'::regclass") shards now)" \
  || { bad "citus_split_shard_by_split_points"; cat "$TMP/split.err"; }
q $COORD -c "SELECT glintru_citus_sync()" >/dev/null && ok "glintru_citus_sync() after the split" || bad "glintru_citus_sync() after the split"
n_att=$(for p in $W1 $W2 $W3; do q $p -c "SELECT count(*) FROM glintru.attachments WHERE shard_id IS NOT NULL"; done | awk '{ s += $1 } END { print s }')
[ "$n_att" = 9 ] && ok "9 shards, 9 shard attachments after the split" || bad "after the split: $n_att shard attachments (want 9)"
sed 's/600/750/g' "$TMP/writes2.sql" >"$TMP/writes4.sql"
both "$TMP/writes4.sql" "writes after the split"
check_same "recommendations after the split"

echo "== a model replaced on the coordinator while another session recommends"
# routed by Citus itself (a plain call) and forwarded by the coordinator's glintru_recommend (inside a query)
for i in $(seq 1 100); do
  echo "SELECT * FROM glintru_recommend($(( (i % 64) + 1 )), 5);"
  u=$(( (i * 7 % 64) + 1 )); echo "SELECT count(*) FROM generate_series($u, $u) u, LATERAL glintru_recommend(u, 5);"
done >"$TMP/reader.sql"
q $COORD -f "$TMP/reader.sql" >"$TMP/reader.out" 2>&1 &
BG=$!
sleep 0.3
for p in $PLAIN $COORD; do q $p -c "SELECT glintru_load_model_file('m', '$MODEL', replace => true)" >/dev/null || bad "replace on $p"; done
wait $BG; rc=$?; BG=""
if [ $rc = 0 ] && ! grep -q ERROR "$TMP/reader.out" && [ "$(grep -c '^5$' "$TMP/reader.out")" = 100 ] \
   && [ "$(grep -c '|' "$TMP/reader.out")" = 500 ]; then
  ok "200 recommendations in another session during the replacement, none failed"
else
  bad "recommendations during the replacement: exit $rc, $(grep -m3 -E "ERROR|FATAL|server" "$TMP/reader.out")"; tail -5 "$TMP/reader.out"
fi
same_models "after the replacement" $W1 $W2 $W3
check_same "recommendations after the replacement"

echo "== a worker restarted"
cluster_as_pg pg_ctl -D "$TMP/n$W1/data" -m fast -w restart >/dev/null && ok "worker $W1 restarted" || bad "restart $W1"
check_same "recommendations after the restart"

echo "== refresh => 'deferred'"
cat >"$TMP/deferred.sql" <<'SQL'
SELECT glintru_attach('m', 'events', order_column => 'ts', refresh => 'deferred');
INSERT INTO events SELECT u, 103 + 3 * ((u * 13) % 30), 800 + t FROM generate_series(1, 64) u, generate_series(0, 2) t;
SQL
both "$TMP/deferred.sql" "re-attached deferred, then writes that slide full windows"
check_same "deferred: recommendations"
echo "SELECT glintru_refresh('events');" >"$TMP/refresh.sql"
both "$TMP/refresh.sql" "glintru_refresh: the same number of states refreshed"
check_same "deferred: recommendations after glintru_refresh"

echo "== TRUNCATE through the coordinator"
cat >"$TMP/truncate.sql" <<'SQL'
SELECT glintru_attach('m', 'events', order_column => 'ts');
CREATE TABLE events_copy AS SELECT * FROM events;
TRUNCATE events;
-- a state left behind would show as "state without interactions"
SELECT count(*) FROM glintru_verify_state('events');
INSERT INTO events SELECT * FROM events_copy;
DROP TABLE events_copy;
SQL
both "$TMP/truncate.sql" "TRUNCATE empties every state, then the rows come back"
check_same "recommendations after TRUNCATE and re-insert"

echo "== glintru_train on the distributed table"
cat >"$TMP/train.sql" <<'SQL'
SELECT glintru_train('trained', 'events', order_column => 'ts',
       options => '{"d": 8, "heads": 2, "max_seq_len": 5, "epochs": 2, "batch_size": 16, "seed": 3}') > 0;
SELECT checksum FROM glintru.models WHERE name = 'trained';
SQL
both "$TMP/train.sql" "glintru_train reads every shard: the same model (checksum) as on the plain node"
same_models "the trained model" $W1 $W2 $W3
q $COORD -c "SELECT glintru_drop_model('trained')" >/dev/null || bad "drop the trained model"

echo "== detach and DROP TABLE clean every node"
cleanup_count() { for p in $COORD $W1 $W2 $W3; do q $p -c "SELECT (SELECT count(*) FROM glintru.attachments) + (SELECT count(*) FROM glintru.user_state) + (SELECT count(*) FROM pg_trigger WHERE tgname IN ('glintru_insert', 'glintru_update', 'glintru_delete', 'glintru_truncate'))"; done | paste -sd' '; }
q $COORD -c "SELECT glintru_detach('events')" >/dev/null
[ "$(cleanup_count)" = "0 0 0 0" ] && ok "glintru_detach: no attachment, state or trigger left on any node" || bad "after detach (attachments+states+triggers per node): $(cleanup_count)"
q $COORD -c "SELECT glintru_attach('m', 'events', order_column => 'ts')" >/dev/null
q $COORD -c "DROP TABLE events" && [ "$(cleanup_count)" = "0 0 0 0" ] && ok "DROP TABLE: no attachment, state or trigger left on any node" \
  || bad "after DROP TABLE: $(cleanup_count)"
q $COORD -c "SELECT glintru_drop_model('m')" >/dev/null
[ "$(for p in $COORD $W1 $W2 $W3; do q $p -c "SELECT count(*) FROM glintru.models"; done | paste -sd' ')" = "0 0 0 0" ] \
  && ok "glintru_drop_model on the coordinator dropped it on every node" || bad "drop model"

crashes=""
for p in $NODES; do
  cluster_as_pg pg_ctl -D "$TMP/n$p/data" status >/dev/null || bad "node $p died: $(tail -5 "$TMP/n$p/server.log")"
  grep -qE "terminated by signal|PANIC" "$TMP/n$p/server.log" && crashes="$crashes $p"
done
[ -z "$crashes" ] && ok "no backend crashed on any node (server logs)" || bad "a backend crashed on node(s)$crashes"
so_guard_check
test_summary citus
