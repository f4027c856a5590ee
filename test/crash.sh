#!/usr/bin/env bash
# test/crash.sh — crashes and restarts (issue 6, item 2).
#
# (a) kill -9 of the backend running a 200,000-row COPY into an attached
#     table, twice: once while rows stream in, once after the last row, while
#     the statement-level trigger writes the users' states.  The postmaster
#     restarts the cluster (crash recovery) by itself.  Afterwards no row of
#     the killed COPY exists, glintru.user_state is byte-identical to before
#     the COPY, glintru_verify_state finds nothing, and glintru_recommend
#     agrees with glintru_recommend_history of each user's window; a COPY run
#     to completion afterwards still works.
# (a2) kill -9 of glintru_attach during its backfill (100,000 rows, 30,000
#     users) and of a model replacement while it rebuilds every attached
#     user's state: the attach leaves nothing behind (no attachment, trigger
#     or state), the old model version and every state survive byte for byte,
#     and both operations work again afterwards.
# (b) pg_ctl -m immediate stop while 3 clients insert (single- and multi-row,
#     overlapping users) and one recommends; restart.  Every insert a client
#     saw acknowledged is there, glintru_verify_state finds nothing, and
#     glintru_recommend works at once (no manual step) and agrees with the
#     from-scratch computation.
#
# Conditions are waited for (COPY progress, locks held on glintru.user_state,
# server log, row counts), never guessed with fixed sleeps.  Self-contained:
# its own cluster under /tmp/grel-crash.*, port $GLINTRU_CRASH_PORT (default
# 5482).  Assumes the extension is installed.  Prints ok:/FAILED: lines; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
. tools/cluster.sh
PORT=${GLINTRU_CRASH_PORT:-5482}
MODEL=$ROOT/test/data/small/model.safetensors
COPY_ROWS=${GLINTRU_CRASH_COPY_ROWS:-200000}
T0=$(date +%s%N)
. test/lib.sh

# the server maps the installed library: a `make install` by someone else during the run
# rewrites it in place under the running server (crashes, mixed code) — detected below
so_guard_start

DIR=$(mktemp -d /tmp/grel-crash.XXXXXX)
chmod 755 "$DIR"
C=$DIR/pg
LOG=$C/server.log
cleanup() {
  local j
  for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  cluster_stop "$C"
  if [ "$failed" = 0 ]; then rm -rf "$DIR"; else echo "(logs kept in $DIR)"; fi
}
trap cleanup EXIT

q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$C" -p "$PORT" -U postgres -d postgres "$@"; }
elapsed() { echo "$(( ($(date +%s%N) - $1) / 1000000 )) ms"; }
ready_count() { grep -c 'database system is ready to accept connections' "$LOG"; }
# wait (up to 60 s) until the server log says ready for the n-th time and a query runs
wait_ready() {
  local n=$1
  for _ in $(seq 1 1200); do
    if [ "$(ready_count)" -ge "$n" ] && q -c "SELECT 1" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  return 1
}
# Wait, inside one server session polling every 10 ms (no psql start per poll), until the
# query HIT returns a row ("pid …"), and print it; print 0 once the query ALIVE, true while
# the statement to hit runs, has gone false after being true (it ended first); 60 s at most.
WAIT_FN="CREATE FUNCTION grel_wait_hit(hit text, alive text) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE r text; a boolean; seen boolean := false; t0 timestamptz := clock_timestamp();
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();   -- fresh pg_stat_activity / progress data every turn
    EXECUTE hit INTO r;
    IF r IS NOT NULL THEN RETURN r; END IF;
    EXECUTE alive INTO a;
    IF a THEN seen := true; ELSIF seen THEN RETURN '0'; END IF;
    IF clock_timestamp() - t0 > interval '60 s' THEN RETURN '0'; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END \$\$"
wait_for_hit() { q -v hit="$1" -v alive="$2" <<<"SELECT grel_wait_hit(:'hit', :'alive');" 2>&1; }
gen_rows() {  # N rows "user<TAB>item" over 40,000 users (the first 4,000 already have state)
  awk -v n="$1" -v salt="$2" 'BEGIN { for (i = 0; i < n; i++)
    printf "%d\t%d\n", 1 + (i * 7919 + salt) % 40000, 103 + 3 * ((i * 31 + int(i / 7) + salt) % 30) }'
}
STATE_MD5="SELECT count(*) || ' states, md5 ' || md5(coalesce(string_agg(attachment_id || ':' || user_id || ':' || coalesce(last_order, '-') || ':' || encode(state, 'hex'), ',' ORDER BY attachment_id, user_id), '')) FROM glintru.user_state"
# glintru_recommend(u) against glintru_recommend_history(model, u's last 5 known items), every user:
# returns "users|mismatches|max score difference" (mismatch: other item at a rank, scores not tied)
agree_sql() {
  local tbl=$1 extra=${2:-}
  cat <<SQL
WITH win AS (
  SELECT user_id, array_agg(item_id ORDER BY seq) AS h
  FROM (SELECT user_id, item_id, seq, row_number() OVER (PARTITION BY user_id ORDER BY seq DESC) AS rn
        FROM $tbl WHERE user_id IS NOT NULL AND item_id BETWEEN 103 AND 190 AND (item_id - 103) % 3 = 0) s
  WHERE rn <= 5 GROUP BY user_id),
cmp AS (
  SELECT w.user_id, a.item_id AS a_item, a.score AS a_score, b.item_id AS b_item, b.score AS b_score
  FROM win w,
       LATERAL (SELECT r.*, row_number() OVER () AS rk FROM glintru_recommend(w.user_id, 10 $extra) r) a
       JOIN LATERAL (SELECT r.*, row_number() OVER () AS rk FROM glintru_recommend_history('m', w.h, 10) r) b
       ON a.rk = b.rk)
SELECT count(DISTINCT user_id) || '|' ||
       count(*) FILTER (WHERE a_item <> b_item AND abs(a_score - b_score) > 1e-4) || '|' ||
       coalesce(max(abs(a_score - b_score)), 0)
FROM cmp
SQL
}
check_agree() {  # what table [extra args]
  local what=$1 res users mism maxd
  res=$(q -c "$(agree_sql "$2" "${3:-}")" 2>&1)
  IFS='|' read -r users mism maxd <<<"$res"
  if [ "$mism" = 0 ] && awk -v d="$maxd" 'BEGIN { exit !(d < 1e-4) }' && [ "$users" -gt 0 ]; then
    ok "$what: glintru_recommend = glintru_recommend_history(window) for all $users users (max score diff $maxd)"
  else
    bad "$what: recommend vs history: $res"
  fi
}
verify() {  # what table
  local r
  r=$(q -c "SELECT count(*) FROM glintru_verify_state('$2')" 2>&1)
  [ "$r" = 0 ] && ok "$1: glintru_verify_state('$2') finds nothing" || bad "$1: glintru_verify_state('$2'): $r"
}

echo "== cluster on port $PORT in $DIR"
GLINTRU_PORT=$PORT cluster_start "$C" restart_after_crash=on >/dev/null || { bad "cluster does not start"; exit 1; }
OPTS="-p $PORT -k $C -c listen_addresses='' -c shared_preload_libraries=glintru -c fsync=off -c restart_after_crash=on"
q -v w="$(od -An -v -tx1 "$MODEL" | tr -d ' \n')" >"$DIR/setup.log" 2>&1 <<'SQL'
CREATE EXTENSION glintru;
SELECT glintru_load_model('m', decode(:'w', 'hex'));
CREATE TABLE events (seq bigserial, user_id bigint, item_id bigint);
INSERT INTO events (user_id, item_id)
SELECT 1 + i % 4000, 103 + 3 * ((i * 13 + i / 4000) % 30) FROM generate_series(0, 19999) i;
CREATE INDEX ON events (user_id, seq);
SELECT glintru_attach('m', 'events', order_column => 'seq');
SQL
[ $? = 0 ] && q -c "$WAIT_FN" >/dev/null && ok "model loaded; events (20,000 rows, 4,000 users) attached" || { cat "$DIR/setup.log"; bad setup; exit 1; }

echo "== (a) kill -9 of a backend in the middle of a $COPY_ROWS-row COPY"
# phase "rows": kill while rows stream in; phase "trigger": all rows read, the state trigger
# has begun locking and writing state rows (a phase of seconds)
for phase in rows trigger; do
  killed=""
  for attempt in 1 2 3; do
    rows_before=$(q -c "SELECT count(*) FROM events")
    max_seq_before=$(q -c "SELECT max(seq) FROM events")
    md5_before=$(q -c "$STATE_MD5")
    n_ready=$(ready_count)
    gen_rows "$COPY_ROWS" "$attempt" | psql -X -h "$C" -p "$PORT" -U postgres -d postgres \
      -c "COPY events (user_id, item_id) FROM STDIN" >"$DIR/copy-$phase-$attempt.log" 2>&1 &
    client=$!
    t_start=$(date +%s%N)
    if [ "$phase" = rows ]; then
      hit="SELECT pid || ' ' || tuples_processed FROM pg_stat_progress_copy
           WHERE relid = 'events'::regclass AND tuples_processed BETWEEN $((COPY_ROWS / 10)) AND $((COPY_ROWS - 1))"
    else
      hit="SELECT p.pid || ' ' || p.tuples_processed FROM pg_stat_progress_copy p JOIN pg_locks l ON l.pid = p.pid
           WHERE p.relid = 'events'::regclass AND p.tuples_processed >= $COPY_ROWS
             AND l.relation = 'glintru.user_state'::regclass LIMIT 1"
    fi
    read -r pid done_rows <<<"$(wait_for_hit "$hit" "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_copy WHERE relid = 'events'::regclass)")"
    if [[ "${pid:-}" =~ ^[1-9][0-9]*$ ]]; then
      kill -9 "$pid"
      if [ "$phase" = rows ]; then killed="$pid after $done_rows of $COPY_ROWS rows read"
      else killed="$pid after all $COPY_ROWS rows were read, while the trigger wrote states"; fi
    fi
    wait "$client"
    if [ -n "$killed" ]; then break; fi
    # the COPY ended before the phase was seen: it is a valid run; the next attempt starts from here
    echo "   (attempt $attempt missed the $phase phase; COPY ended: $(tail -1 "$DIR/copy-$phase-$attempt.log"))"
  done
  if [ -z "$killed" ]; then bad "could not kill the COPY during the $phase phase in 3 attempts"; continue; fi
  grep -q 'server closed the connection\|terminating connection\|connection to server was lost' \
    "$DIR/copy-$phase-$attempt.log" && ok "COPY client saw its backend die" || bad "COPY client: $(cat "$DIR/copy-$phase-$attempt.log")"
  if wait_ready $((n_ready + 1)); then
    ok "killed backend $killed; postmaster recovered on its own in $(elapsed "$t_start")"
  else
    bad "server did not come back after kill -9"; tail -20 "$LOG"; exit 1
  fi
  grep -q "terminated by signal 9" "$LOG" && grep -q "all server processes terminated; reinitializing" "$LOG" &&
    grep -q "automatic recovery in progress" "$LOG" && ok "server log: crash, reinitialisation, crash recovery" \
    || bad "server log lacks the crash-recovery lines"
  rows_after=$(q -c "SELECT count(*) FROM events")
  stray=$(q -c "SELECT count(*) FROM events WHERE seq > $max_seq_before")
  [ "$rows_after" = "$rows_before" ] && [ "$stray" = 0 ] \
    && ok "no row of the killed COPY survived ($rows_after rows, as before)" \
    || bad "rows after the kill: $rows_after (before $rows_before, $stray from the COPY)"
  md5_after=$(q -c "$STATE_MD5")
  [ "$md5_after" = "$md5_before" ] && ok "glintru.user_state byte-identical to before the COPY ($md5_after)" \
    || bad "user_state changed: before '$md5_before', after '$md5_after'"
  verify "after kill -9 ($phase)" events
done
check_agree "after the kills (no manual step)" events
mem=$(q -c "SELECT mode || ' ' || models || ' model(s), ' || used_bytes || ' bytes' FROM glintru_memory()")
[[ "$mem" == "shared 1 model"* ]] && ok "model back in the re-created shared memory ($mem)" || bad "glintru_memory after restart: $mem"
t=$(date +%s%N)
out=$(gen_rows 20000 7 | q -c "COPY events (user_id, item_id) FROM STDIN" 2>&1)
[ $? = 0 ] && ok "a 20,000-row COPY completes after the crashes ($(elapsed "$t"))" || bad "COPY after the crashes: $out"
verify "after the completed COPY" events
check_agree "after the completed COPY" events

echo "== (a2) kill -9 while glintru_attach backfills and while a model replacement rebuilds states"
# run SQL in the background; kill its backend once it holds a lock on glintru.user_state
# (i.e. it is writing states).  Sets $killed to a description, empty if the statement ended first.
kill_in_state_phase() {  # label sql-file like-pattern
  local label=$1 file=$2 pat=$3 client pid
  killed=""
  q -f "$file" >"$DIR/$label.log" 2>&1 &
  client=$!
  pid=$(wait_for_hit "SELECT a.pid::text FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                      WHERE a.query LIKE '$pat' AND a.state = 'active' AND a.pid <> pg_backend_pid()
                        AND l.relation = 'glintru.user_state'::regclass LIMIT 1" \
                     "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '$pat'
                                     AND state = 'active' AND pid <> pg_backend_pid())")
  if [[ "$pid" =~ ^[1-9][0-9]*$ ]]; then kill -9 "$pid"; killed="backend $pid"; else echo "   (no hit: $pid)"; fi
  wait "$client"
}
q -c "CREATE TABLE big (seq bigserial, user_id bigint, item_id bigint)" \
  -c "INSERT INTO big (user_id, item_id) SELECT 1 + (i * 7919) % 30000, 103 + 3 * ((i * 13 + i / 4000) % 30) FROM generate_series(0, 99999) i" \
  -c "CREATE INDEX ON big (user_id, seq)" \
  >/dev/null || bad "create big"
echo "SELECT glintru_attach('m', 'big', order_column => 'seq');" >"$DIR/attach.sql"
n_ready=$(ready_count); t=$(date +%s%N)
kill_in_state_phase attach "$DIR/attach.sql" 'SELECT glintru_attach%'
if [ -n "$killed" ] && wait_ready $((n_ready + 1)); then
  ok "killed $killed during the backfill of 100,000 rows / 30,000 users; recovered in $(elapsed "$t")"
  left=$(q -c "SELECT (SELECT count(*) FROM glintru.attachments WHERE relid = 'big'::regclass) || ' attachments, '
               || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'big'::regclass) || ' triggers, '
               || (SELECT count(*) FROM glintru.user_state s JOIN glintru.attachments a ON a.id = s.attachment_id
                   WHERE a.relid = 'big'::regclass) || ' states'")
  [ "$left" = "0 attachments, 0 triggers, 0 states" ] && ok "the killed attach left nothing ($left)" || bad "killed attach left: $left"
else
  bad "could not kill glintru_attach while it wrote states (it ended: $(tail -1 "$DIR/attach.log"))"
  wait_ready "$n_ready" || true
fi
out=$(q -c "SELECT glintru_attach('m', 'big', order_column => 'seq')" 2>"$DIR/attach2.err") && ok "attach after the crash: $out users" || bad "attach after crash: $out $(cat "$DIR/attach2.err")"
verify "attach after the crash" big
# a replacement (mix logits swapped) rebuilds 52,004 users' states in one transaction: kill it midway
cat >"$DIR/replace.sql" <<'SQL'
CREATE FUNCTION pg_temp.swap_mix(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  hlen int := (SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i);
  lo int := 8 + hlen + (convert_from(substring(b FROM 9 FOR hlen), 'UTF8')::jsonb->'weights'->'data_offsets'->>0)::int;
BEGIN
  RETURN overlay(b PLACING substring(b FROM lo + 5 FOR 4) || substring(b FROM lo + 1 FOR 4) FROM lo + 1 FOR 8);
END $$;
SELECT glintru_load_model('m', pg_temp.swap_mix(glintru_export_model('m')), replace => true);
SQL
ck_before=$(q -c "SELECT checksum FROM glintru_models() WHERE name = 'm'")
md5_before=$(q -c "$STATE_MD5")
n_ready=$(ready_count); t=$(date +%s%N)
kill_in_state_phase replace "$DIR/replace.sql" 'SELECT glintru_load_model%'
if [ -n "$killed" ] && wait_ready $((n_ready + 1)); then
  ok "killed $killed while the replacement rebuilt states; recovered in $(elapsed "$t")"
  ck_after=$(q -c "SELECT checksum FROM glintru_models() WHERE name = 'm'")
  md5_after=$(q -c "$STATE_MD5")
  [ "$ck_after" = "$ck_before" ] && [ "$md5_after" = "$md5_before" ] \
    && ok "old model version and every state intact (${ck_after:0:12}…, $md5_after)" \
    || bad "after the killed replacement: checksum $ck_before → $ck_after, states $md5_before → $md5_after"
else
  bad "could not kill the replacement while it wrote states (it ended: $(tail -1 "$DIR/replace.log"))"
  wait_ready "$n_ready" || true
fi
verify "after the killed replacement" events
verify "after the killed replacement" big
check_agree "after the killed replacement" big ", interactions => 'big'"
t=$(date +%s%N)
out=$(q -f "$DIR/replace.sql" 2>&1) && [ "$(q -c "SELECT checksum FROM glintru_models() WHERE name = 'm'")" != "$ck_before" ] \
  && ok "the replacement completes after the crash ($(elapsed "$t"))" || bad "replacement after the crash: $out"
verify "after the completed replacement" events
check_agree "after the completed replacement" big ", interactions => 'big'"

echo "== (a3) a deferred table (30,000 users): kill -9 during an INSERT … SELECT that slides windows, and during glintru_refresh"
q -c "CREATE TABLE def (seq bigserial, user_id bigint, item_id bigint)" \
  -c "CREATE INDEX ON def (user_id, seq)" \
  -c "INSERT INTO def (user_id, item_id) SELECT 1 + i % 30000, 103 + 3 * ((i * 13) % 30) FROM generate_series(0, 299999) i" \
  -c "SELECT glintru_attach('m', 'def', order_column => 'seq', refresh => 'deferred')" >/dev/null || bad "create def"
echo "INSERT INTO def (user_id, item_id) SELECT 1 + i % 30000, 103 + 3 * ((i * 7) % 30) FROM generate_series(0, 59999) i;" >"$DIR/def_insert.sql"
md5_before=$(q -c "$STATE_MD5")
n_ready=$(ready_count); t=$(date +%s%N)
kill_in_state_phase def_insert "$DIR/def_insert.sql" 'INSERT INTO def%'
if [ -n "$killed" ] && wait_ready $((n_ready + 1)); then
  ok "killed $killed while a deferred table's states were written; recovered in $(elapsed "$t")"
  [ "$(q -c "$STATE_MD5")" = "$md5_before" ] && ok "every state as before the killed statement" || bad "states changed by the killed statement"
else
  bad "could not kill the INSERT into the deferred table while it wrote states"
  wait_ready "$n_ready" || true
fi
verify "deferred table after the crash" def
q -f "$DIR/def_insert.sql" >/dev/null 2>&1 && ok "the INSERT completes after the crash" || bad "INSERT into def after the crash"
verify "deferred table after the completed INSERT" def
echo "SELECT glintru_refresh('def');" >"$DIR/def_refresh.sql"
n_ready=$(ready_count); t=$(date +%s%N)
kill_in_state_phase def_refresh "$DIR/def_refresh.sql" 'SELECT glintru_refresh%'
if [ -n "$killed" ] && wait_ready $((n_ready + 1)); then
  ok "killed $killed during glintru_refresh; recovered in $(elapsed "$t")"
else
  bad "could not kill glintru_refresh while it wrote states"
  wait_ready "$n_ready" || true
fi
verify "deferred table after the killed refresh" def
n=$(q -c "SELECT glintru_refresh('def')" 2>&1)
[[ "$n" =~ ^[1-9][0-9]*$ ]] && ok "glintru_refresh after the crash brought $n states up to date" || bad "refresh after the crash: $n"
[ "$(q -c "SELECT glintru_refresh('def')")" = 0 ] && ok "a second refresh has nothing left to do" || bad "second refresh"
verify "deferred table after the refresh" def
q -c "SELECT glintru_detach('def')" -c "DROP TABLE def" >/dev/null || bad "drop def"

echo "== (b) immediate shutdown during concurrent inserts (3 clients) and recommends (1 client)"
q >"$DIR/setup-b.log" 2>&1 <<'SQL'
CREATE TABLE clicks (seq bigserial, user_id bigint, item_id bigint, ts timestamptz DEFAULT now());
INSERT INTO clicks (user_id, item_id) SELECT 1 + i % 300, 103 + 3 * ((i * 17) % 30) FROM generate_series(0, 2999) i;
SELECT glintru_attach('m', 'clicks', order_column => 'seq');
SQL
[ $? = 0 ] || { cat "$DIR/setup-b.log"; bad "setup (b)"; exit 1; }
base=$(q -c "SELECT count(*) FROM clicks")
# client scripts: autocommit INSERT … RETURNING seq; what a client prints was acknowledged
for c in 1 2 3; do
  awk -v c="$c" 'BEGIN { srand(c); for (s = 0; s < 20000; s++) {
      u = 1 + int(rand() * 300);
      if (s % 4 == 3) {
        printf "INSERT INTO clicks (user_id, item_id) VALUES (%d, %d), (%d, %d), (%d, %d) RETURNING seq;\n",
          u, 103 + 3 * int(rand() * 30), u + 1, 103 + 3 * int(rand() * 30), u, 103 + 3 * int(rand() * 30)
      } else
        printf "INSERT INTO clicks (user_id, item_id) VALUES (%d, %d) RETURNING seq;\n", u, 103 + 3 * int(rand() * 30)
    } }' >"$DIR/client$c.sql"
done
awk -v t="'clicks'" 'BEGIN { srand(9); for (s = 0; s < 20000; s++)
  printf "SELECT count(*) FROM glintru_recommend(%d, 10, interactions => %s);\n", 1 + int(rand() * 320), t }' >"$DIR/reader.sql"
declare -a cl
for c in 1 2 3; do
  psql -X -q -At -v ON_ERROR_STOP=1 -h "$C" -p "$PORT" -U postgres -d postgres -f "$DIR/client$c.sql" \
    >"$DIR/ack$c.txt" 2>"$DIR/client$c.err" &
  cl+=($!)
done
psql -X -q -At -v ON_ERROR_STOP=1 -h "$C" -p "$PORT" -U postgres -d postgres -f "$DIR/reader.sql" \
  >"$DIR/reader.out" 2>"$DIR/reader.err" &
cl+=($!)
target=$((base + 1500))
t=$(date +%s%N)
for _ in $(seq 1 1200); do
  [ "$(q -c "SELECT count(*) >= $target FROM clicks" 2>/dev/null)" = t ] && break
  sleep 0.05
done
inflight=$(q -c "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO clicks%'")
n_ready=$(ready_count)
cluster_as_pg pg_ctl -D "$C/data" -m immediate stop >/dev/null 2>&1 && ok "immediate shutdown after ≥ 1,500 inserted rows ($(elapsed "$t"), $inflight inserts in flight)" \
  || bad "pg_ctl -m immediate stop"
for p in "${cl[@]}"; do wait "$p"; done
acked=$(cat "$DIR"/ack[123].txt | wc -l)
reads=$(wc -l <"$DIR/reader.out")
cut=$(grep -lE 'server closed|terminating connection|connection to server' "$DIR"/client[123].err "$DIR/reader.err" | wc -l)
[ "$cut" = 4 ] && ok "all 4 clients cut off by the shutdown: $acked inserted rows acknowledged, $reads recommends served" \
  || bad "only $cut of 4 clients were cut off by the shutdown: $(head -3 "$DIR"/client1.err)"
t=$(date +%s%N)
cluster_as_pg pg_ctl -D "$C/data" -l "$LOG" -w -o "$OPTS" start >/dev/null 2>&1 && wait_ready $((n_ready + 1)) \
  && ok "restarted after the immediate shutdown ($(elapsed "$t"))" || { bad "restart"; tail -20 "$LOG"; exit 1; }
grep -q "database system was not properly shut down; automatic recovery in progress" "$LOG" \
  && ok "server log: crash recovery at startup" || bad "no crash recovery in the log"
# nothing acknowledged is lost
missing=$(cat "$DIR"/ack[123].txt | q -c "CREATE TEMP TABLE ack (seq bigint)" -c "COPY ack FROM STDIN" \
            -c "SELECT count(*) FROM ack LEFT JOIN clicks USING (seq) WHERE clicks.seq IS NULL" 2>&1)
total=$(q -c "SELECT count(*) FROM clicks")
[ "$missing" = 0 ] && [ "$acked" -gt 0 ] \
  && ok "all $acked acknowledged rows present ($((total - base)) inserted in all, $((total - base - acked)) committed unacknowledged)" \
  || bad "acknowledged rows missing after recovery: $missing of $acked"
# recommendations work without any manual step, then the state is verified
r=$(q -c "SELECT count(*) FROM glintru_recommend(1, 10, interactions => 'clicks')" 2>&1)
[ "$r" = 10 ] && ok "glintru_recommend works right after the restart" || bad "recommend after restart: $r"
verify "after the immediate shutdown" clicks
verify "after the immediate shutdown" events
check_agree "after the immediate shutdown" clicks ", interactions => 'clicks'"
out=$(q -c "INSERT INTO clicks (user_id, item_id) SELECT 1 + i % 50, 103 + 3 * (i % 30) FROM generate_series(1, 500) i" 2>&1)
[ $? = 0 ] && ok "inserts work after the restart" || bad "insert after restart: $out"
verify "after more inserts" clicks
errs=$(grep -cE 'PANIC|TRAP|could not (write|lock|create|read) the|unreadable state|invalid (memory alloc|page)|corrupt' "$LOG")
[ "$errs" = 0 ] && ok "server log: no PANIC, assertion or glintru state error" || { bad "server log: $errs suspicious lines"; grep -E 'PANIC|TRAP|could not (write|lock|create|read) the|unreadable state|invalid (memory alloc|page)|corrupt' "$LOG" | head -5; }

so_guard_check
test_summary crash "$(elapsed "$T0")"
