#!/usr/bin/env bash
# test/replica.sh — glintru on a hot standby (issue 6, item 1).
#
# A primary and a streaming hot standby on this machine (pg_basebackup -R -X
# stream, second port), both with shared_preload_libraries = glintru.  The
# standby is cloned before the extension exists, so everything it knows —
# catalogue, model bytes, attachment, every user's state — arrives through
# WAL replay.  On the primary: load the bundled model, attach an interactions
# table (backfill), insert single-row, multi-row, COPY, out-of-order and
# unknown-item events, delete one.  After replay (waited for by LSN, not by
# sleeping) the standby must return exactly the primary's recommendations
# (item ids and scores compared as text, every user, several k, batch too),
# hold byte-identical states, list the model in glintru_models() and load it
# into its own shared memory on first use.  Then the model is replaced on the
# primary (the `weights` mix logits swapped in the exported file, found via
# the header's data_offsets) and the standby must serve the new version —
# different recommendations, equal to the primary's — including in a standby
# session that was open (and had served the old version) across the
# replacement.  Serving never writes: every comparison runs in READ ONLY
# transactions on both servers, and the standby never assigns a transaction
# id.  Finally detach and drop replicate: the standby then lists nothing and
# refuses to recommend with a clear error.
#
# Self-contained: starts and stops its own clusters (tools/cluster.sh) under
# /tmp/grel-replica.*, ports $GLINTRU_REPLICA_PORT and +1 (default 5480/5481).
# Assumes the extension is installed.  Prints ok:/FAILED: lines; exits
# non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
. tools/cluster.sh
P1=${GLINTRU_REPLICA_PORT:-5480}
P2=$((P1 + 1))
MODEL=$ROOT/test/data/small/model.safetensors
T0=$(date +%s%N)
. test/lib.sh

# the server maps the installed library: a `make install` by someone else during the run
# rewrites it in place under the running server (crashes, mixed code) — detected below
so_guard_start

DIR=$(mktemp -d /tmp/grel-replica.XXXXXX)
chmod 755 "$DIR"
cleanup() {
  cluster_stop "$DIR/standby"
  cluster_stop "$DIR/primary"
  if [ "$failed" = 0 ] || [ -n "${GLINTRU_KEEP_ON_SUCCESS:-}" ]; then rm -rf "$DIR"; else echo "(logs kept in $DIR)"; fi
}
trap cleanup EXIT

p1() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/primary" -p "$P1" -U postgres -d postgres "$@"; }
p2() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/standby" -p "$P2" -U postgres -d postgres "$@"; }

# wait until the standby has replayed everything the primary has written
wait_replay() {
  local lsn
  lsn=$(p1 -c "SELECT pg_current_wal_lsn()") || return 1
  for _ in $(seq 1 600); do
    [ "$(p2 -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" = t ] && return 0
    sleep 0.05
  done
  echo "standby did not replay up to $lsn in 30 s (replayed: $(p2 -c 'SELECT pg_last_wal_replay_lsn()' 2>&1))"
  return 1
}

# the recommendations of every user, as text: "user|k|rank|item|score"
RECS_SQL="
WITH users AS (SELECT DISTINCT user_id AS u FROM events WHERE user_id IS NOT NULL UNION VALUES (424242::bigint)),
     ks(k, ex) AS (VALUES (1, true), (10, true), (40, false))
SELECT string_agg(format('%s|%s|%s|%s|%s|%s', u, k, ex, r.ord, r.item_id, r.score), E'\n'
                  ORDER BY u, k, ex, r.ord)
FROM users, ks, LATERAL glintru_recommend(u, k, ex) WITH ORDINALITY AS r(item_id, score, ord);"
BATCH_SQL="
SELECT string_agg(format('%s|%s|%s', user_id, item_id, score), E'\n' ORDER BY ord)
FROM glintru_recommend_batch((SELECT array_agg(DISTINCT user_id ORDER BY user_id) FROM events WHERE user_id IS NOT NULL)
                             || 424242::bigint, 7)
     WITH ORDINALITY AS b(user_id, item_id, score, ord);"
STATE_SQL="SELECT count(*) || ' states, md5 ' || md5(coalesce(string_agg(user_id || ':' || coalesce(last_order, '-') || ':' || encode(state, 'hex'), ',' ORDER BY attachment_id, user_id), ''))
           FROM glintru.user_state;"

# compare a query's output on both servers (the standby inside a READ ONLY transaction)
same_on_both() {
  local what=$1 sql=$2 a b ra rb
  a=$(p1 -c "BEGIN TRANSACTION READ ONLY" -c "$sql" -c "COMMIT" 2>&1); ra=$?
  b=$(p2 -c "BEGIN TRANSACTION READ ONLY" -c "$sql" -c "COMMIT" 2>&1); rb=$?
  if [ "$ra" = 0 ] && [ "$rb" = 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then
    if [ "$(printf '%s\n' "$a" | wc -l)" = 1 ]; then ok "$what: standby = primary (${a:0:60})"
    else ok "$what: standby = primary ($(printf '%s\n' "$a" | wc -l) result lines)"; fi
  else
    bad "$what: standby differs from primary (exit codes $ra, $rb)"
    diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head -10
  fi
}

echo "== primary (port $P1) and hot standby (port $P2) in $DIR"
GLINTRU_PORT=$P1 cluster_start "$DIR/primary" wal_level=replica max_wal_senders=4 >/dev/null \
  || { bad "primary does not start"; exit 1; }
mkdir -p "$DIR/standby" && chmod 755 "$DIR/standby"
[ "$(id -u)" = 0 ] && chown postgres "$DIR/standby"
if cluster_as_pg pg_basebackup -h "$DIR/primary" -p "$P1" -U postgres -D "$DIR/standby/data" \
     -R -X stream -c fast >"$DIR/basebackup.log" 2>&1 &&
   cluster_as_pg pg_ctl -D "$DIR/standby/data" -l "$DIR/standby/server.log" -w -o \
     "-p $P2 -k $DIR/standby -c listen_addresses='' -c shared_preload_libraries=glintru -c fsync=off -c hot_standby=on" \
     start >/dev/null; then
  :
else
  cat "$DIR/basebackup.log"; tail -20 "$DIR/standby/server.log" 2>/dev/null
  bad "standby does not start"; exit 1
fi
for _ in $(seq 1 600); do   # the walreceiver connects shortly after the standby accepts connections
  [ "$(p1 -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ] && break
  sleep 0.05
done
if [ "$(p2 -c 'SELECT pg_is_in_recovery()')" = t ] && [ "$(p1 -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ]; then
  ok "hot standby streaming from the primary (cloned before CREATE EXTENSION)"
else
  bad "standby is not a streaming hot standby"; exit 1
fi

echo "== primary: model, table, attach, events"
p1 -v w="$(od -An -v -tx1 "$MODEL" | tr -d ' \n')" >"$DIR/setup.log" 2>&1 <<'SQL'
CREATE EXTENSION glintru;
SELECT glintru_load_model('m', decode(:'w', 'hex'));
CREATE TABLE events (seq bigserial, user_id bigint, item_id bigint, note text);
-- history before attach: the backfill builds these states
INSERT INTO events (user_id, item_id)
SELECT 1 + (i % 20), 103 + 3 * ((i * 7 + i / 20) % 30) FROM generate_series(0, 119) i;
SELECT glintru_attach('m', 'events', order_column => 'seq');
-- the standby session below polls with a transaction per poll (COMMIT in a
-- procedure), so that it holds no snapshot while the replacement is replayed:
-- a snapshot held across it would conflict with the primary's pruning of the
-- replaced rows and be cancelled (max_standby_streaming_delay)
CREATE PROCEDURE public.grel_wait_for_new_model(old text, go text) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. 1200 LOOP
    EXIT WHEN (SELECT checksum FROM glintru_models() WHERE name = 'm') <> old
              AND (pg_stat_file(go, true)).size IS NOT NULL;
    IF i = 1200 THEN RAISE EXCEPTION 'the replacement did not reach the standby in 60 s'; END IF;
    COMMIT;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SQL
[ $? = 0 ] && ok "model loaded, events attached on the primary (20 users backfilled)" \
  || { cat "$DIR/setup.log"; bad "setup on the primary"; exit 1; }

events_before=$(p1 -c "SELECT count(*) FROM events")
p1 >"$DIR/events.log" 2>&1 <<'SQL'
-- single-row inserts, one statement each (users old and new)
INSERT INTO events (user_id, item_id) VALUES (1, 142);
INSERT INTO events (user_id, item_id) VALUES (1, 118);
INSERT INTO events (user_id, item_id) VALUES (21, 190);
INSERT INTO events (user_id, item_id) VALUES (22, 157);
INSERT INTO events (user_id, item_id) VALUES (22, 999999);          -- unknown item: no state change
INSERT INTO events (user_id, item_id) VALUES (NULL, 103);           -- NULL user: ignored
-- multi-row inserts: several users per statement, windows filled and slid
INSERT INTO events (user_id, item_id)
SELECT 1 + (i % 25), 103 + 3 * ((i * 11) % 30) FROM generate_series(1, 200) i;
INSERT INTO events (user_id, item_id) VALUES (23, 106), (23, 109), (24, 112), (23, 115), (24, 118);
-- an event older than the user's latest: a rebuild of that user
INSERT INTO events (seq, user_id, item_id) VALUES (-1, 2, 121);
-- COPY
COPY events (user_id, item_id) FROM STDIN;
30	133
30	136
31	139
30	142
\.
-- a transaction rolled back leaves nothing
BEGIN;
INSERT INTO events (user_id, item_id) VALUES (40, 103), (40, 106);
ROLLBACK;
-- a delete rebuilds the user
DELETE FROM events WHERE user_id = 3 AND seq = (SELECT max(seq) FROM events WHERE user_id = 3);
SQL
if [ $? = 0 ]; then
  ok "events on the primary: $(( $(p1 -c "SELECT count(*) FROM events") - events_before )) inserted after attach" \
     "(single-row, multi-row, COPY, out-of-order, unknown item, NULL user, rollback, delete)"
else
  cat "$DIR/events.log"; bad "events on the primary"
fi
vs=$(p1 -c "SELECT count(*) FROM glintru_verify_state('events')" 2>&1)
[ "$vs" = 0 ] && ok "primary: glintru_verify_state finds nothing" || bad "primary: glintru_verify_state: $vs"

echo "== standby after replay"
wait_replay && ok "standby replayed up to the primary's WAL position" || bad "replay"
# before any use on the standby: listed, same checksum, not yet in its shared memory
m1=$(p1 -c "SELECT name, items, d, heads, max_seq_len, bytes, checksum FROM glintru_models()")
m2=$(p2 -c "SELECT name, items, d, heads, max_seq_len, bytes, checksum FROM glintru_models()")
shm_before=$(p2 -c "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'")
[ -n "$m1" ] && [ "$m1" = "$m2" ] && ok "standby glintru_models() lists the model as the primary does (${m2:0:40}…)" \
  || bad "glintru_models(): primary '$m1' standby '$m2'"
[ "$shm_before" = f ] && ok "standby: model not in its shared memory before first use" \
  || bad "standby: in_shared_memory before first use is '$shm_before'"
same_on_both "state rows" "$STATE_SQL"
same_on_both "glintru_recommend for every user and an unknown one, k = 1, 10 (exclude seen), 40 (all)" "$RECS_SQL"
same_on_both "glintru_recommend_batch" "$BATCH_SQL"
same_on_both "glintru_recommend_history" \
  "SELECT string_agg(item_id || ':' || score, ',') FROM glintru_recommend_history('m', ARRAY[103, 142, 118], 10)"
shm_after=$(p2 -c "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'")
mem2=$(p2 -c "SELECT mode || ' ' || models || ' model(s), ' || used_bytes || ' bytes' FROM glintru_memory()")
[ "$shm_after" = t ] && ok "standby: model in its own shared memory after use ($mem2)" \
  || bad "standby: in_shared_memory after use is '$shm_after' ($mem2)"
vs2=$(p2 -c "BEGIN TRANSACTION READ ONLY" -c "SELECT count(*) FROM glintru_verify_state('events')" -c "COMMIT" 2>&1)
[ "$vs2" = 0 ] && ok "standby: glintru_verify_state finds nothing (read-only)" || bad "standby: glintru_verify_state: $vs2"
before_dump=$(p2 -c "$RECS_SQL")

echo "== a standby session open across the replacement"
# one standby backend serves the old version, waits (polling its catalogue,
# not sleeping blindly) until the replacement has been replayed — and until
# this script has checked the new version is not cached yet — then serves again
old_ck=$(p2 -c "SELECT checksum FROM glintru_models() WHERE name = 'm'")
p2 -v before="$DIR/sess_before.txt" -v after="$DIR/sess_after.txt" -v ready="$DIR/sess_ready" \
   -v old="$old_ck" -v go="$DIR/sess_go" -v recs="$RECS_SQL" >"$DIR/session.log" 2>&1 <<'SQL' &
\o :before
:recs
\o
\o :ready
SELECT 'ready';
\o
CALL grel_wait_for_new_model(:'old', :'go');
\o :after
:recs
SQL
SESSION=$!
for _ in $(seq 1 600); do [ -s "$DIR/sess_ready" ] && break; sleep 0.05; done
[ -s "$DIR/sess_ready" ] || bad "standby session did not start"

echo "== model replaced on the primary"
# swap the two `weights` mix logits in the exported file (offsets from its header)
p1 >"$DIR/replace.log" 2>&1 <<'SQL'
CREATE FUNCTION pg_temp.swap_mix(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  hlen int := (SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i);
  h jsonb := convert_from(substring(b FROM 9 FOR hlen), 'UTF8')::jsonb;
  lo int := 8 + hlen + (h->'weights'->'data_offsets'->>0)::int;   -- 0-based byte offset
BEGIN
  IF (h->'weights'->'data_offsets'->>1)::int - (h->'weights'->'data_offsets'->>0)::int <> 8 THEN
    RAISE EXCEPTION 'weights tensor is not 2 floats';
  END IF;
  IF substring(b FROM lo + 1 FOR 4) = substring(b FROM lo + 5 FOR 4) THEN
    RAISE EXCEPTION 'the two mix logits are equal: swapping them changes nothing';
  END IF;
  RETURN overlay(b PLACING substring(b FROM lo + 5 FOR 4) || substring(b FROM lo + 1 FOR 4) FROM lo + 1 FOR 8);
END $$;
SELECT glintru_load_model('m', pg_temp.swap_mix(glintru_export_model('m')), replace => true);
SQL
if [ $? = 0 ]; then ok "model replaced on the primary (weights logits swapped)"; else cat "$DIR/replace.log"; bad "replace"; fi
vs=$(p1 -c "SELECT count(*) FROM glintru_verify_state('events')" 2>&1)
[ "$vs" = 0 ] && ok "primary after replace: glintru_verify_state finds nothing" || bad "primary after replace: verify: $vs"
wait_replay && ok "standby replayed the replacement" || bad "replay of the replacement"
[ "$(p2 -c "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'")" = f ] \
  && ok "standby: the new version is not in shared memory before its first use (cache keyed by version)" \
  || bad "standby: new version reported in shared memory before use"
touch "$DIR/sess_go"
c1=$(p1 -c "SELECT checksum FROM glintru_models() WHERE name = 'm'")
c2=$(p2 -c "SELECT checksum FROM glintru_models() WHERE name = 'm'")
[ "$c1" = "$c2" ] && [ "$m2" != "" ] && [[ "$m2" != *"$c2"* ]] \
  && ok "standby lists the new version (checksum ${c2:0:12}…, was different)" || bad "checksums: primary $c1 standby $c2"
same_on_both "state rows after replace" "$STATE_SQL"
same_on_both "glintru_recommend after replace" "$RECS_SQL"
same_on_both "glintru_recommend_batch after replace" "$BATCH_SQL"
after_dump=$(p2 -c "$RECS_SQL")
changed=$(diff <(printf '%s\n' "$before_dump" | cut -d'|' -f1-5) <(printf '%s\n' "$after_dump" | cut -d'|' -f1-5) | grep -c '^>')
changed_scores=$(diff <(printf '%s\n' "$before_dump") <(printf '%s\n' "$after_dump") | grep -c '^>')
[ "$changed_scores" -gt 0 ] && ok "standby serves the new version: $changed_scores of $(printf '%s\n' "$after_dump" | wc -l) result lines changed ($changed in item order)" \
  || bad "standby recommendations did not change after the replacement"
[ "$(p2 -c "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'")" = t ] \
  && ok "standby: new version in its shared memory after use" || bad "standby: new version not in shared memory"
wait "$SESSION"; src=$?
primary_after=$(p1 -c "$RECS_SQL")
if [ "$src" = 0 ] && [ "$(cat "$DIR/sess_before.txt")" = "$before_dump" ] && [ "$(cat "$DIR/sess_after.txt")" = "$primary_after" ]; then
  ok "one standby session served the old version, then the new one after replay, equal to the primary"
else
  cat "$DIR/session.log"; bad "standby session across the replacement (exit $src)"
fi

echo "== more events with the new version"
p1 -c "INSERT INTO events (user_id, item_id) SELECT 1 + (i % 33), 103 + 3 * ((i * 13) % 30) FROM generate_series(1, 99) i" \
   -c "INSERT INTO events (user_id, item_id) VALUES (5, 160)" >/dev/null 2>&1 || bad "inserts after replace"
wait_replay || bad "replay"
same_on_both "glintru_recommend after 100 more events" "$RECS_SQL"

echo "== nothing writes on the standby"
xid=$(p2 -c "BEGIN TRANSACTION READ ONLY" -c "SELECT count(*) FROM glintru_recommend(1, 5)" \
         -c "SELECT pg_current_xact_id_if_assigned() IS NULL" -c "COMMIT" 2>&1 | tr '\n' ' ')
[ "$xid" = "5 t " ] && ok "standby: recommend in a READ ONLY transaction, no transaction id assigned" || bad "standby read-only: $xid"

echo "== a deferred table: the standby serves its stale states exactly, read-only"
# the same rows in an eager and a deferred table, then more rows into both
# (full windows slide: the deferred states only record their items)
p1 >"$DIR/deferred.log" 2>&1 <<'SQL'
CREATE TABLE events_d (seq bigint, user_id bigint, item_id bigint, note text);
INSERT INTO events_d SELECT * FROM events;
SELECT glintru_attach('m', 'events_d', order_column => 'seq', refresh => 'deferred');
INSERT INTO events (seq, user_id, item_id) SELECT 100000 + i, 1 + (i % 25), 103 + 3 * ((i * 17) % 30) FROM generate_series(1, 120) i;
INSERT INTO events_d (seq, user_id, item_id) SELECT 100000 + i, 1 + (i % 25), 103 + 3 * ((i * 17) % 30) FROM generate_series(1, 120) i;
SQL
[ $? = 0 ] && ok "deferred table attached and written on the primary" || { cat "$DIR/deferred.log"; bad "deferred table"; }
vs=$(p1 -c "SELECT count(*) FROM glintru_verify_state('events_d')" 2>&1)
[ "$vs" = 0 ] && ok "primary: glintru_verify_state('events_d') finds nothing" || bad "primary: verify events_d: $vs"
wait_replay || bad "replay of the deferred table"
recs_of() {  # table: every user's top-10, as text
  echo "SELECT string_agg(format('%s|%s|%s', u, r.item_id, r.score), E'\n' ORDER BY u, r.ord)
        FROM (SELECT DISTINCT user_id AS u FROM $1 WHERE user_id IS NOT NULL) users,
             LATERAL glintru_recommend(u, 10, true, '$1') WITH ORDINALITY AS r(item_id, score, ord);"
}
same_on_both "deferred table: glintru_recommend for every user" "$(recs_of events_d)"
e=$(p2 -c "BEGIN TRANSACTION READ ONLY" -c "$(recs_of events)" -c "COMMIT" 2>&1)
d=$(p2 -c "BEGIN TRANSACTION READ ONLY" -c "$(recs_of events_d)" -c "COMMIT" 2>&1)
[ -n "$e" ] && [ "$e" = "$d" ] && ok "standby: deferred states serve exactly what eager ones do ($(printf '%s\n' "$d" | wc -l) result lines)" \
  || bad "standby: deferred and eager recommendations differ"
p1 -c "SELECT glintru_detach('events_d')" >/dev/null 2>&1 || bad "detach events_d"

echo "== detach and drop replicate"
p1 -c "SELECT glintru_detach('events')" -c "SELECT glintru_drop_model('m')" >/dev/null 2>&1 || bad "detach/drop on the primary"
wait_replay || bad "replay of detach/drop"
left=$(p2 -c "SELECT (SELECT count(*) FROM glintru_models()) || ' models, ' || (SELECT count(*) FROM glintru.user_state) || ' states'")
err=$(p2 -c "SELECT * FROM glintru_recommend(1, 5)" 2>&1)
[ "$left" = "0 models, 0 states" ] && [[ "$err" == *"no interactions table is attached"* ]] \
  && ok "standby after detach + drop: $left, recommend refuses cleanly" || bad "standby after detach/drop: $left / $err"
p2 -c "SELECT 1" >/dev/null 2>&1 && ok "standby still up" || bad "standby down"

errs=$(grep -E 'ERROR|FATAL|PANIC' "$DIR/standby/server.log" | grep -vc 'no interactions table is attached')
[ "$errs" = 0 ] && ok "standby log has no ERROR/FATAL/PANIC" || { bad "standby log has $errs errors"; grep -E 'ERROR|FATAL|PANIC' "$DIR/standby/server.log" | grep -v 'no interactions table is attached' | head -5; }
perrs=$(grep -E 'ERROR|FATAL|PANIC' "$DIR/primary/server.log" | grep -vc 'the two mix logits')
[ "$perrs" = 0 ] && ok "primary log has no ERROR/FATAL/PANIC" || { bad "primary log has $perrs errors"; grep -E 'ERROR|FATAL|PANIC' "$DIR/primary/server.log" | head -5; }

so_guard_check
ms=$(( ($(date +%s%N) - T0) / 1000000 ))
test_summary replica "$((ms / 1000)).$((ms % 1000 / 100)) s"
