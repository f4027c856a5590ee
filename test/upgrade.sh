#!/usr/bin/env bash
# test/upgrade.sh — the upgrade path from release 0.1.0 (commit d5176f3) to
# this tree, on a private relocated copy of the PostgreSQL installation
# (bench/lib.sh; the system-wide install is left alone) and a throwaway
# cluster with shared_preload_libraries = glintru:
#
#   1. 0.1.0 built with today's toolchain and installed; CREATE EXTENSION;
#      a model loaded (from the client side) and a table of ~30 users
#      attached, a model trained with glintru_train and attached to its
#      table; every user's recommendations (items and scores, as text),
#      glintru_verify_state and glintru_models() recorded; a pg_dump taken.
#   2. The server stopped, this tree installed over 0.1.0, started.  Before
#      ALTER EXTENSION … UPDATE (extversion 0.1.0): recommendations are
#      served unchanged from the 0.1.0 tables, and a write to an attached
#      table fails with a clear error (the new library never writes into
#      0.1.0's columns).  After it: 0.2.0, the states kept (still GST2) and
#      verifying, recommendations identical, new inserts work (their states
#      become GST3) and verify, the models unchanged, a deferred attach and
#      glintru_refresh work.
#   3. The 0.1.0 dump restored into a new database of the 0.2.0 server: the
#      same checks (its states are GST2 and are read, not rebuilt).
#
# Prints ok: / FAILED: lines and "upgrade: N passed, N failed"; exits
# non-zero on a failure.  Run as root (PostgreSQL then runs as postgres) or
# as a user that may run initdb.  GLINTRU_OLD_REV: another old revision.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
. test/lib.sh
. bench/lib.sh
OLD_REV=${GLINTRU_OLD_REV:-d5176f3}
MODEL=$ROOT/test/data/small/model.safetensors
MAKEFLAGS="-j$(nproc)"
export MAKEFLAGS
unset BENCH_SRC BENCH_PORT
GLINTRU_BENCH_BUILD=1

bench_init upgrade
STAGE="build of 0.1.0"
DONE=0
# An early exit (a build or a start failed, bench/lib.sh exited) is a failure too.
on_exit() {
  if [ "$DONE" != 1 ]; then
    bad "stopped during: $STAGE"
    [ -f "$W/server.log" ] && tail -5 "$W/server.log"
    test_summary upgrade
  fi
  bench_cleanup
}
trap on_exit EXIT

# psql on database $DB: unaligned, tuples only, stop at the first error.
qd() { q -d "$DB" "$@"; }
# ok if "$2" = "$3", else FAILED with both: check MESSAGE GOT WANT
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi; }

# Every user's top-10 of both tables (and two users without state), one by
# one and batched, as text: table|user|rank|item|score.
recs() {
  qd <<'SQL'
SELECT t, u, n, item_id, score FROM (
  SELECT 'ev' AS t, u, r.n, r.item_id, r.score
  FROM (SELECT DISTINCT user_id FROM ev UNION SELECT 999) s(u),
       LATERAL glintru_recommend(u, 10, true, 'ev') WITH ORDINALITY r(item_id, score, n)
  UNION ALL
  SELECT 'syn', u, r.n, r.item_id, r.score
  FROM (SELECT DISTINCT user_id FROM syn UNION SELECT 999) s(u),
       LATERAL glintru_recommend(u, 10, false, 'syn') WITH ORDINALITY r(item_id, score, n)
  UNION ALL
  SELECT 'batch', r.user_id, r.n, r.item_id, r.score
  FROM glintru_recommend_batch(ARRAY(SELECT DISTINCT user_id FROM ev ORDER BY 1), 5, true, 'ev')
       WITH ORDINALITY r(user_id, item_id, score, n)
) x ORDER BY t, u, n;
SQL
}

# Recommendations as recorded under 0.1.0: same rows, items in order, scores within 1e-5.
same_recs() {
  local now diff
  now=$(recs 2>&1)
  diff=$(paste -d'|' <(echo "$now") "$W/recs.0.1.0" | awk -F'|' '
    NF != 10 || $1 != $6 || $2 != $7 || $3 != $8 || $4 != $9 { bad++; if (bad < 4) print "row " NR ": " $0; next }
    { d = $5 - $10; if (d < 0) d = -d; if (d > worst) worst = d; if (d > 1e-5) { bad++; if (bad < 4) print "row " NR ": " $0 } }
    END { if (bad) print bad " rows differ"; else printf "max %.2g", worst }')
  if [ "${diff#max }" != "$diff" ] && [ "$(echo "$now" | wc -l)" = "$(wc -l <"$W/recs.0.1.0")" ]; then
    ok "$1: every user's recommendations as under 0.1.0 ($(wc -l <"$W/recs.0.1.0") rows: items in order, scores within 1e-5, $diff)"
  else
    bad "$1: recommendations differ from 0.1.0's: $diff $(echo "$now" | head -3)"
  fi
}

# glintru_verify_state finds nothing on both tables (and any given).
verify_all() {
  local what=$1 r t
  shift
  for t in ev syn "$@"; do
    r=$(qd -c "SELECT count(*) FROM glintru_verify_state('$t')" 2>&1)
    check "$what: glintru_verify_state('$t') finds nothing" "$r" 0
  done
}

# Counts of states: all, in 0.1.0's format (GST2 magic first), in 0.2.0's (GST3 magic in the trailer).
state_formats() {
  qd -c "SELECT count(*), count(*) FILTER (WHERE substr(state, 1, 4) = '\x32545347'::bytea),
                count(*) FILTER (WHERE substr(state, length(state) - 27, 4) = '\x33545347'::bytea)
         FROM glintru.user_state" 2>&1
}

# New events for both tables: pushes, slides of full windows, a new user, an
# out-of-order event (a rebuild), an unknown item; then verify again.
insert_and_verify() {
  local before after
  before=$(state_formats)
  if qd >"$W/insert.log" 2>&1 <<'SQL'
INSERT INTO ev (user_id, item_id, ts)
SELECT u, 100 + 3 * (1 + (u * 5) % 30), timestamptz '2027-01-01' + u * interval '1 s'
FROM generate_series(1, 30, 3) u;
INSERT INTO ev (user_id, item_id, ts) VALUES (31, 103, '2027-02-01'), (31, 106, '2027-02-02'),
    (2, 109, '2020-01-01'), (5, 1000, '2027-03-01');
INSERT INTO syn SELECT user_id, item_id, ts + 1000 FROM syn WHERE user_id <= 6 AND ts < 3;
SQL
  then
    after=$(state_formats)
    ok "$1: inserts into the attached tables (states before: $before; after: $after [all|GST2|GST3])"
  else
    bad "$1: inserts fail: $(cat "$W/insert.log")"
  fi
  verify_all "$1, after the inserts"
}

# MESSAGE SQL: the statement fails, saying the tables are of an older release and what to run.
fails_clearly() {
  local err
  err=$(qd -c "$2" 2>&1)
  case "$err" in
    *"older version of the extension"*"ALTER EXTENSION glintru UPDATE"*)
      ok "$1 fails with a clear error ($(echo "$err" | head -1 | sed 's/^ERROR: *//'))" ;;
    *) bad "$1: want an error naming ALTER EXTENSION glintru UPDATE, got '$err'" ;;
  esac
}

# The models as glintru_models() lists them: unchanged since 0.1.0.
same_models() {
  check "$1: glintru_models() as under 0.1.0 (names, checksums, shapes)" \
    "$(qd -c "SELECT string_agg(concat_ws(':', name, items, d, heads, max_seq_len, bytes, checksum), ' ' ORDER BY name) FROM glintru_models()" 2>&1)" \
    "$(cat "$W/models.0.1.0")"
}

# ---- 1. release 0.1.0 ----
BENCH_REV=$OLD_REV bench_build
ok "0.1.0 ($OLD_REV) builds with today's toolchain ($(grep -c 'warning:' "$W/build.log") warnings) and installs into a private PostgreSQL copy"
STAGE="0.1.0 cluster"
bench_cluster fsync=off
DB=app
"$PGBIN/createdb" "$DB"
STAGE="0.1.0 setup"
if qd -v w="$(od -An -v -tx1 "$MODEL" | tr -d ' \n')" >"$W/setup.log" 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION glintru;
SELECT glintru_load_model('small', decode(:'w', 'hex'));
-- ~330 events of 30 users, 2 to 20 each (L = 5: most windows full), a few unknown items
CREATE TABLE ev (id bigserial, user_id bigint, item_id bigint, ts timestamptz);
INSERT INTO ev (user_id, item_id, ts)
SELECT u, CASE WHEN (u * 31 + j * 17) % 23 = 0 THEN 1000 ELSE 100 + 3 * (1 + (u * 7 + j * j * 3) % 30) END,
       timestamptz '2026-01-01' + (u * 1000 + j * 37) * interval '1 minute'
FROM generate_series(1, 30) u, generate_series(1, 2 + (u * 7) % 19) j;
-- a window of one item, and a user with unknown items only (no state)
INSERT INTO ev (user_id, item_id, ts) VALUES (40, 103, '2026-06-01'), (41, 1000, '2026-06-01'), (41, 1003, '2026-06-02');
CREATE INDEX ON ev (user_id, ts);
SELECT glintru_attach('small', 'ev');
-- a model trained in the database, attached to its table
CREATE TABLE syn AS SELECT * FROM glintru_synthetic_interactions(40, 60, 12, 3);
CREATE INDEX ON syn (user_id, ts);
SELECT glintru_train('trained', 'syn', options => '{"d": 8, "heads": 2, "max_seq_len": 6, "epochs": 2, "batch_size": 32, "seed": 5}');
SELECT glintru_attach('trained', 'syn');
SQL
then
  ok "0.1.0: extension $(qd -c "SELECT extversion FROM pg_extension WHERE extname = 'glintru'"), model loaded, $(qd -c "SELECT count(*) FROM ev") events of $(qd -c "SELECT count(DISTINCT user_id) FROM ev") users attached, a model trained and attached"
else
  bad "0.1.0 setup: $(tail -5 "$W/setup.log")"
fi
recs >"$W/recs.0.1.0" 2>&1 || bad "0.1.0 recommendations: $(head -3 "$W/recs.0.1.0")"
qd -c "SELECT string_agg(concat_ws(':', name, items, d, heads, max_seq_len, bytes, checksum), ' ' ORDER BY name) FROM glintru_models()" >"$W/models.0.1.0"
STATES_010=$(state_formats)
ok "0.1.0: $(wc -l <"$W/recs.0.1.0") recommendation rows recorded; states $STATES_010 [all|GST2|GST3]"
verify_all "0.1.0"
if "$PGBIN/pg_dump" -Fc -d "$DB" -f "$W/app.dump" 2>"$W/dump.log"; then
  ok "0.1.0: pg_dump -Fc of the database"
else
  bad "pg_dump: $(cat "$W/dump.log")"
fi

# ---- 2. this tree installed over 0.1.0 ----
STAGE="install of this tree over 0.1.0"
bench_stop
BENCH_REV="" bench_copy "$W/src-new"
bench_install "$W/src-new"
ok "this tree ($SRCDESC) installed over 0.1.0 into the same copy ($(cd "$("$PGBIN/pg_config" --sharedir)/extension" && echo glintru--*.sql))"
bench_start
STAGE="0.2.0 library, 0.1.0 tables"
check "before the update: extversion" "$(qd -c "SELECT extversion FROM pg_extension WHERE extname = 'glintru'")" 0.1.0
same_recs "before the update"
verify_all "before the update"
fails_clearly "before the update: an insert into an attached table" \
  "INSERT INTO ev (user_id, item_id, ts) VALUES (1, 103, '2027-01-01')"
fails_clearly "before the update: glintru_attach" "SELECT glintru_attach('small', 'ev')"
check "before the update: the failed writes changed no state [all|GST2|GST3]" "$(state_formats)" "$STATES_010"

STAGE="ALTER EXTENSION glintru UPDATE"
if out=$(qd -c "ALTER EXTENSION glintru UPDATE" 2>&1); then ok "ALTER EXTENSION glintru UPDATE"; else bad "ALTER EXTENSION glintru UPDATE: $out"; fi
check "after the update: extversion" "$(qd -c "SELECT extversion FROM pg_extension WHERE extname = 'glintru'")" 0.2.0
check "after the update: the states are kept as they were, in 0.1.0's format [all|GST2|GST3]" "$(state_formats)" "$STATES_010"
check "after the update: both attachments eager" "$(qd -c "SELECT string_agg(relid::text || ':' || refresh, ' ' ORDER BY id) FROM glintru.attachments")" "ev:eager syn:eager"
verify_all "after the update"
same_recs "after the update"
same_models "after the update"
insert_and_verify "after the update"
check "after the update: glintru_refresh('ev') on an eager table refreshes nothing" "$(qd -c "SELECT glintru_refresh('ev')" 2>&1)" 0
if out=$(qd 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE TABLE ev2 AS SELECT * FROM ev;
CREATE INDEX ON ev2 (user_id, ts);
SELECT glintru_attach('small', 'ev2', refresh => 'deferred');
INSERT INTO ev2 (user_id, item_id, ts) SELECT u, 100 + 3 * (1 + (u * 11) % 30), timestamptz '2028-01-01' + u * interval '1 s'
FROM generate_series(1, 30) u;
SQL
); then
  ok "after the update: glintru_attach(..., refresh => 'deferred') on a copy of the table ($(echo "$out" | head -1) users), then inserts"
else
  bad "after the update: deferred attach: $out"
fi
check "after the update: the deferred table verifies" "$(qd -c "SELECT count(*) FROM glintru_verify_state('ev2')" 2>&1)" 0
check "after the update: glintru_refresh('ev2') refreshes the slid windows, then it still verifies" \
  "$(qd -c "SELECT glintru_refresh('ev2') > 0" 2>&1)|$(qd -c "SELECT count(*) FROM glintru_verify_state('ev2')" 2>&1)" "t|0"

# ---- 3. the 0.1.0 dump restored on 0.2.0 ----
STAGE="restore of the 0.1.0 dump"
DB=restored
"$PGBIN/createdb" "$DB"
if "$PGBIN/pg_restore" -d "$DB" "$W/app.dump" >"$W/restore.log" 2>&1 && [ ! -s "$W/restore.log" ]; then
  ok "restore: pg_restore of the 0.1.0 dump into a new database, no error"
else
  bad "restore: pg_restore: $(head -20 "$W/restore.log")"
fi
check "restore: extversion" "$(qd -c "SELECT extversion FROM pg_extension WHERE extname = 'glintru'")" 0.2.0
check "restore: the 0.1.0 states, in 0.1.0's format [all|GST2|GST3]" "$(state_formats)" "$STATES_010"
check "restore: the attachments name the restored tables" \
  "$(qd -c "SELECT string_agg(relid::text || ':' || refresh || ':' || (relid::oid = c.oid), ' ' ORDER BY a.id)
            FROM glintru.attachments a LEFT JOIN pg_class c ON c.relname = a.relid::text")" "ev:eager:true syn:eager:true"
verify_all "restore"
same_recs "restore"
same_models "restore"
insert_and_verify "restore"
check "restore: re-attaching with refresh => 'deferred' works and verifies" \
  "$(qd -c "SELECT glintru_attach('trained', 'syn', refresh => 'deferred') > 0" 2>&1)|$(qd -c "SELECT count(*) FROM glintru_verify_state('syn')" 2>&1)" "t|0"

STAGE="end"
if as_pg "$PGBIN/pg_ctl" -D "$W/data" status >/dev/null; then ok "server still up"; else bad "server died"; tail -20 "$W/server.log"; fi
if grep -qE "PANIC|TRAP|terminated by signal" "$W/server.log"; then bad "server log: $(grep -E "PANIC|TRAP|terminated by signal" "$W/server.log" | head -3)"; fi
log "done"
DONE=1
test_summary upgrade
