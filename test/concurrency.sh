#!/usr/bin/env bash
# test/concurrency.sh — live state under concurrent writers (issue 3, item 4).
#
# (a) 4 sessions insert single rows (and a few multi-row statements, some
#     rolled back) for the SAME user and a few shared users at once, with
#     interleaved order values, and race to create the first state of new
#     users; afterwards glintru_verify_state finds nothing and every user's
#     glintru_recommend equals glintru_recommend_history of the last L known
#     items.
# (b) Inserts for different users never wait: while a transaction that
#     inserted for user A stays open, other sessions insert for users B (with
#     state) and C (new) under lock_timeout = 2s and commit, and read A's
#     recommendations; a session inserting for A waits (lock_timeout error),
#     and without a timeout completes only after A's transaction commits.
#
# Needs a running server with shared_preload_libraries = glintru and the
# extension installed; connection from PGHOST / PGPORT / PGUSER.  Creates and
# drops its own database.  Prints "ok: ..." / "FAILED: ..." lines; exits 1 on
# any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v psql >/dev/null || export PATH="$(pg_config --bindir):$PATH"

DB=glintru_concurrency
MODEL=test/data/small/model.safetensors
WORKERS=4
ROUNDS=120
TMP=$(mktemp -d /tmp/glintru-conc.XXXXXX)
. test/lib.sh
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
# Poll (every 0.1 s, at most TRIES times) until exactly one other session of
# this database matches the pg_stat_activity condition COND.
wait_for_session() {  # COND TRIES
  local n
  for _ in $(seq 1 "$2"); do
    n=$(q -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND $1")
    [ "$n" = 1 ] && return 0
    sleep 0.1
  done
  return 1
}
cleanup() {
  # background sessions of this script, by their own pids
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "== concurrency (database $DB)"
PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null \
  || { bad "create database $DB"; exit 1; }
# the model is sent from the client: the server need not read the work tree
q -v b64="$(base64 -w0 "$MODEL")" <<'SQL' >/dev/null || { bad "setup"; exit 1; }
CREATE EXTENSION glintru;
SELECT glintru_load_model('conc', decode(:'b64', 'base64'));
CREATE TABLE events (user_id bigint, item_id integer, ts bigint);
CREATE TABLE writers_done ();
CREATE TABLE monitor (checks int, problems bigint);
-- some history before the attach
INSERT INTO events SELECT u, 100 + 3 * (1 + (u * 7 + g * 11) % 30), g FROM generate_series(1, 5) u, generate_series(1, 4) g;
SELECT glintru_attach('conc', 'events');
-- the check: (users with known items, states, verify problems, recommend mismatches)
CREATE FUNCTION check_live() RETURNS text LANGUAGE sql AS $$
  WITH h AS (SELECT user_id AS u, array_agg(item_id::bigint ORDER BY ts, ctid) AS hist FROM events
             WHERE user_id IS NOT NULL AND item_id BETWEEN 103 AND 190 AND (item_id - 100) % 3 = 0 GROUP BY 1),
  w AS (SELECT u, hist[greatest(1, cardinality(hist) - 4):] AS win FROM h)
  SELECT concat_ws(' ',
    (SELECT count(*) FROM w),
    (SELECT count(*) FROM glintru.user_state),
    (SELECT count(*) FROM glintru_verify_state('events')),
    (SELECT count(*) FROM w WHERE NOT (
       SELECT coalesce(bool_and(coalesce(a.item_id = b.item_id AND abs(a.score - b.score) <= 1e-5, false)), false)
       FROM glintru_recommend(u, 10) WITH ORDINALITY a(item_id, score, n)
       FULL JOIN glintru_recommend_history('conc', win, 10) WITH ORDINALITY b(item_id, score, n) USING (n))))
$$;
SQL

# ---- (a) concurrent writers on the same users ----
# Worker w: 40 new users (1000..1039) in the same order as every other worker
# (races to create the first state), then ROUNDS statements: mostly single
# rows for user 1, the rest for shared users 2..5.  Order values are unique:
# ts = 4 * seq + w, so the workers' events interleave; "old" events (seq of a
# round 40 earlier) are out of order.  Every 7th statement is an old event,
# every 10th a multi-row INSERT over users 1, 2, 3, 5 (one row old), every
# 13th a transaction that is rolled back, every 4th one that stays open a few
# ms after its insert (a lost update would show); some items are unknown.
# Then 30 in-order events in short transactions, for users 1..5.
for w in $(seq 0 $((WORKERS - 1))); do
  awk -v w="$w" -v rounds="$ROUNDS" '
    function reg(i, s) { return 4 * (8 * i + s) + w }
    function old(i, s) { return 4 * (8 * (i - 40) + 4 + s) + w }
    BEGIN {
      print "SELECT pg_advisory_lock_shared(4242); SELECT pg_advisory_unlock_shared(4242);"
      for (u = 1000; u < 1040; u++)
        printf "INSERT INTO events VALUES (%d, %d, %d);\n", u, 100 + 3 * (1 + (u + w) % 30), w
      for (i = 1; i <= rounds; i++) {
        item = 100 + 3 * (1 + (i * 7 + w * 13) % 30)
        if ((i + w) % 9 == 0) item = 1000                 # unknown item
        if (i % 13 == 0)
          printf "BEGIN; INSERT INTO events VALUES (1, %d, %d); INSERT INTO events VALUES (2, 103, %d); ROLLBACK;\n", item, reg(i, 0), old(i, 0)
        else if (i % 10 == 0)
          printf "INSERT INTO events VALUES (5, %d, %d), (1, 106, %d), (3, %d, %d), (1, 109, %d), (2, 112, %d);\n", item, reg(i, 0), reg(i, 1), item, reg(i, 2), old(i, 0), reg(i, 3)
        else if (i % 7 == 0)
          printf "INSERT INTO events VALUES (%d, %d, %d);\n", 1 + i % 5, item, old(i, 1)
        else if (i % 4 == 0)      # a transaction that stays open a moment after its insert
          printf "BEGIN; INSERT INTO events VALUES (1, %d, %d); SELECT pg_sleep(0.005); COMMIT;\n", item, reg(i, 0)
        else
          printf "INSERT INTO events VALUES (%d, %d, %d);\n", (i % 3 == 0 ? 2 + (i + w) % 4 : 1), item, reg(i, 0)
      }
      # a tail of in-order events only (no rebuild repairs a lost update)
      for (i = rounds + 1; i <= rounds + 30; i++)
        printf "BEGIN; INSERT INTO events VALUES (%d, %d, %d); SELECT pg_sleep(0.003); COMMIT;\n", (i % 2 ? 1 : 2 + i % 4), 100 + 3 * (1 + (i * 11 + w) % 30), reg(i, 0)
    }' >"$TMP/worker$w.sql"
done
# hold the start barrier while the workers connect, then let them go together
psql -X -q -At -d "$DB" -c "SELECT pg_advisory_lock(4242); SELECT pg_sleep(1.5);" >/dev/null &
barrier=$!
sleep 0.3
start=$(date +%s%N)
pids=()
for w in $(seq 0 $((WORKERS - 1))); do
  psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -f "$TMP/worker$w.sql" >"$TMP/worker$w.out" 2>&1 &
  pids+=($!)
done
# a monitor: glintru_verify_state over and over while the writers run (each
# call sees one snapshot, in which committed states must match the table)
psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" >"$TMP/monitor.out" 2>&1 <<'SQL' &
DO $$
DECLARE n int := 0; p bigint := 0;
BEGIN
  LOOP
    p := p + (SELECT count(*) FROM glintru_verify_state('events'));
    n := n + 1;
    EXIT WHEN EXISTS (SELECT FROM writers_done) OR n >= 5000;
    PERFORM pg_sleep(0.005);
  END LOOP;
  INSERT INTO monitor VALUES (n, p);
END $$;
SQL
monitor=$!
wfail=0
for p in "${pids[@]}"; do wait "$p" || wfail=$((wfail + 1)); done
wait "$barrier"
q -c "INSERT INTO writers_done DEFAULT VALUES"
wait "$monitor" || { bad "monitor session failed"; cat "$TMP/monitor.out"; }
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$wfail" = 0 ]; then
  ok "$WORKERS sessions x $((ROUNDS + 70)) statements on shared users finished without error (${ms} ms)"
else
  bad "$wfail of $WORKERS writer sessions failed"; for w in $(seq 0 $((WORKERS - 1))); do tail -3 "$TMP/worker$w.out"; done
fi
rows=$(q -c "SELECT count(*) FROM events")
expect=$((20 + WORKERS * 70 + WORKERS * (ROUNDS - ROUNDS / 13 + 4 * (ROUNDS / 10 - ROUNDS / 130))))
if [ "$rows" = "$expect" ]; then ok "all $rows committed rows present, rolled-back ones absent"; else bad "rows: $rows, expected $expect"; fi
IFS='|' read -r checks mproblems <<<"$(q -c "SELECT checks, problems FROM monitor")"
if [ -n "$checks" ] && [ "$checks" -gt 10 ] && [ "$mproblems" = 0 ]; then
  ok "glintru_verify_state run $checks times during the writes found nothing"
else
  bad "glintru_verify_state during the writes: ${checks:-no} runs, ${mproblems:-?} problems"
fi
ties=$(q -c "SELECT count(*) FROM (SELECT FROM events GROUP BY user_id, ts HAVING count(*) > 1) t")
if [ "$ties" = 0 ]; then ok "order values are unique per user (no result depends on physical order)"; else bad "$ties ties in (user_id, ts)"; fi
res=$(q -c "SELECT check_live()")
read -r users states problems mism <<<"$res"
if [ -n "$users" ] && [ "$users" = "$states" ] && [ "$problems" = 0 ] && [ "$mism" = 0 ]; then
  ok "after concurrent writers: $users users, $states states, verify_state finds nothing, recommend = recommend_history for every user"
else
  bad "after concurrent writers: users states problems mismatches = $res"
  q -c "SELECT * FROM glintru_verify_state('events') LIMIT 5"
fi

# ---- (b) different users never wait; the same user does ----
# session 1: inserts for user 1 (has state) and new user 2001, then holds its transaction open
psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" >"$TMP/holder.out" 2>&1 <<'SQL' &
BEGIN;
INSERT INTO events VALUES (1, 130, 10000000);
INSERT INTO events VALUES (2001, 133, 1);
SELECT pg_sleep(6);
SELECT 'committing', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint;
COMMIT;
SQL
holder=$!
# wait until it sleeps inside the open transaction
wait_for_session "query LIKE '%pg_sleep(6)%' AND state = 'active'" 100 || bad "holder session did not start"

t0=$(date +%s%N)
if out=$(q 2>&1 <<'SQL'
SET lock_timeout = '2s';
INSERT INTO events VALUES (2, 136, 10000000);
INSERT INTO events VALUES (3, 139, 10000000), (4, 142, 10000001), (5, 145, 10000002);
INSERT INTO events VALUES (2002, 148, 1);
INSERT INTO events VALUES (2, 151, 13);   -- out of order: rebuilds user 2 from the table
SQL
); then
  ms=$((($(date +%s%N) - t0) / 1000000))
  if [ "$ms" -lt 1500 ]; then
    ok "while user 1's insert is uncommitted, inserts for users 2..5 and a new user commit at once (${ms} ms)"
  else
    bad "inserts for other users took ${ms} ms while user 1's transaction was open"
  fi
else
  bad "inserts for other users failed while user 1's transaction was open: $out"
fi
if out=$(q -c "SET statement_timeout = '2s'" -c "SELECT count(*) FROM glintru_recommend(1, 5)" 2>&1) && [ "$out" = 5 ]; then
  ok "recommend for user 1 does not wait for its open transaction"
else
  bad "recommend for user 1 while its transaction is open: $out"
fi
for u in 1 2001; do
  out=$(q -c "SET lock_timeout = '1s'" -c "INSERT INTO events VALUES ($u, 154, 10000005)" 2>&1)
  if echo "$out" | grep -q "lock timeout"; then
    ok "an insert for user $u ($( [ $u = 1 ] && echo "with state" || echo "whose first state is uncommitted")) waits for the open transaction (lock timeout)"
  else
    bad "an insert for user $u did not wait for the open transaction: ${out:-no error}"
  fi
done
# without a timeout it completes, but only after the holder commits
psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" >"$TMP/waiter.out" 2>&1 <<'SQL' &
INSERT INTO events VALUES (1, 157, 10000006);
SELECT 'inserted', (extract(epoch FROM clock_timestamp()) * 1e6)::bigint;
SQL
waiter=$!
if wait_for_session "query LIKE '%(1, 157, 10000006)%' AND wait_event_type = 'Lock'" 50; then ok "an insert for user 1 without timeout is waiting on a lock"; else bad "the insert for user 1 without timeout is not waiting on a lock"; fi
wait "$holder"; hrc=$?
wait "$waiter"; wrc=$?
committed=$(awk -F'|' '$1 == "committing" {print $2}' "$TMP/holder.out")
inserted=$(awk -F'|' '$1 == "inserted" {print $2}' "$TMP/waiter.out")
if [ "$hrc" = 0 ] && [ "$wrc" = 0 ] && [ -n "$committed" ] && [ -n "$inserted" ] \
   && [ "$inserted" -gt "$committed" ]; then
  ok "an insert for user 1 without timeout completed after the open transaction committed"
else
  bad "waiting insert: holder rc $hrc, waiter rc $wrc, committed at '$committed', inserted at '$inserted'"
  cat "$TMP/holder.out" "$TMP/waiter.out"
fi
res=$(q -c "SELECT check_live()")
read -r users states problems mism <<<"$res"
if [ -n "$users" ] && [ "$users" = "$states" ] && [ "$problems" = 0 ] && [ "$mism" = 0 ]; then
  ok "after the lock tests: $users users, verify_state finds nothing, recommend = recommend_history"
else
  bad "after the lock tests: users states problems mismatches = $res"
fi

test_summary concurrency
