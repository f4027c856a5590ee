#!/usr/bin/env bash
# test/model_swap.sh — a model replaced and dropped while other sessions
# recommend (issue 6, item 3): readers see either version, never a half-built
# or freed model, and only "does not exist" while it is dropped; attach and
# detach while inserts run leave a consistent state; a training runs while
# other sessions are served.  Uses the cluster in
# PGHOST/PGPORT/PGUSER; prints ok:/FAILED: lines; exit 1 on failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DB=glintru_model_swap
. test/lib.sh
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
q() { psql -X -q -At -d "$DB" "$@"; }
w=$(od -An -v -tx1 test/data/small/model.safetensors | tr -d ' \n')
q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION glintru" \
  -c "SELECT glintru_load_model('m', decode('$w', 'hex'))" \
  -c "CREATE TABLE ev (user_id bigint, item_id bigint, ts bigserial)" \
  -c "CREATE INDEX ON ev (user_id, ts)" >/dev/null || exit 1
TMP=$(mktemp -d)

# two readers call recommend_history in a loop while a writer swaps the model
for r in 1 2; do
  ( for i in $(seq 1 400); do
      echo "SELECT count(*) FROM glintru_recommend_history('m', ARRAY[103, 106, 109], 5);"
    done | psql -X -q -At -d "$DB" -v ON_ERROR_STOP=0 >"$TMP/reader$r.out" 2>"$TMP/reader$r.err" ) &
done
for i in $(seq 1 20); do
  q -c "SELECT glintru_load_model('m', decode('$w', 'hex'), replace => true)" >/dev/null 2>>"$TMP/writer.err"
  if [ $((i % 5)) = 0 ]; then
    q -c "BEGIN; SELECT glintru_drop_model('m'); SELECT pg_sleep(0.05); COMMIT;" >/dev/null 2>>"$TMP/writer.err"
    q -c "SELECT glintru_load_model('m', decode('$w', 'hex'))" >/dev/null 2>>"$TMP/writer.err"
  fi
done
wait
answers=$(cat "$TMP"/reader*.out | sort | uniq -c | tr -s ' ' | tr '\n' ';')
others=$(cat "$TMP"/reader*.err | grep ERROR | grep -v 'model "m" does not exist' | head -3)
[ -z "$others" ] && ok "readers during 20 replacements and 4 drops: answers [$answers], no error but \"does not exist\"" \
  || bad "readers saw: $others"
[ ! -s "$TMP/writer.err" ] && ok "the writer's replacements and drops all succeeded" || bad "writer: $(head -3 "$TMP/writer.err")"
[ "$(cat "$TMP"/reader*.out | grep -vc '^5$')" = 0 ] && ok "every answer had 5 items" || bad "answers other than 5 items: $answers"

# attach and detach while inserts run
( for i in $(seq 1 300); do
    echo "INSERT INTO ev (user_id, item_id) VALUES ($((i % 17 + 1)), $((103 + 3 * (i % 30))));"
  done | psql -X -q -d "$DB" -v ON_ERROR_STOP=0 >/dev/null 2>"$TMP/ins.err" ) &
for i in 1 2 3 4 5; do
  q -c "SET client_min_messages = warning; SELECT glintru_attach('m', 'ev')" >/dev/null 2>>"$TMP/att.err"
  q -c "SELECT glintru_detach('ev')" >/dev/null 2>>"$TMP/att.err"
done
q -c "SET client_min_messages = warning; SELECT glintru_attach('m', 'ev')" >/dev/null 2>>"$TMP/att.err"
wait
[ ! -s "$TMP/ins.err" ] && ok "300 inserts during 5 attach/detach cycles: no error" || bad "inserts: $(head -3 "$TMP/ins.err")"
[ ! -s "$TMP/att.err" ] && ok "attach/detach during inserts: no error" || bad "attach/detach: $(head -3 "$TMP/att.err")"
n=$(q -c "SELECT count(*) FROM ev")
p=$(q -c "SELECT count(*) FROM glintru_verify_state('ev')")
[ "$n" = 300 ] && [ "$p" = 0 ] && ok "after the last attach: $n rows, verify_state finds nothing" || bad "rows $n, problems $p"
# training in one session while others recommend from the attached table
q -c "CREATE TABLE syn AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20)" >/dev/null
( q -c "SET client_min_messages = warning" \
    -c "SELECT glintru_train('t2', 'syn', options => '{\"d\": 16, \"heads\": 2, \"max_seq_len\": 10, \"epochs\": 4}') > 0" \
    >"$TMP/train.out" 2>"$TMP/train.err" ) &
train=$!
( for i in $(seq 1 300); do echo "SELECT count(*) FROM glintru_recommend($((i % 17 + 1)), 5);"; done \
    | psql -X -q -At -d "$DB" >"$TMP/rec.out" 2>"$TMP/rec.err" ) &
wait
[ ! -s "$TMP/train.err" ] && grep -q '^t$' "$TMP/train.out" && [ ! -s "$TMP/rec.err" ] \
  && [ "$(grep -c '^5$' "$TMP/rec.out")" = 300 ] \
  && ok "a training ran while 300 recommendations were served (all answered, no error)" \
  || bad "training while serving: $(head -2 "$TMP/train.err" "$TMP/rec.err")"
rm -rf "$TMP"
psql -X -q -d postgres -c "DROP DATABASE $DB" >/dev/null
test_summary "model swap"
