#!/usr/bin/env bash
# test/train_workers.sh — glintru_train with background workers against the
# command line (issue 12, part 1):
#
# (a) the same data, seed and worker count give the same model, byte for
#     byte, from glintru_train(..., workers => N) (the weights bytea stored
#     in glintru.models) and from glintru-train --threads N (its
#     safetensors file), for N = 2 and 3;
# (b) pg_cancel_backend during a parallel training: the statement ends with
#     the cancel error, nothing is stored, and no worker of that backend is
#     left (the seconds from the cancel to the end are printed, not judged);
# (c) a worker that dies (SIGTERM to its process) fails the training with
#     an error naming it, nothing is stored, the other workers exit;
# (d) pg_terminate_backend of the leader: its workers exit too;
# (e) workers => 16 on a server whose max_worker_processes cannot give 15:
#     it trains with the workers it gets, says so in a NOTICE, and the model
#     is glintru-train's for that many.
#
# Needs a running server with the extension installed (connection from
# PGHOST / PGPORT / PGUSER, as test/run.sh sets them) on this machine (the
# workers are found with ps by their title "glintru training worker N for
# PID <leader>" and signalled by pid), and builds build/glintru-train.
# Creates and drops its own database.  Prints "ok: ..." / "FAILED: ..." lines.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v psql >/dev/null || export PATH="$(pg_config --bindir):$PATH"
. test/lib.sh

DB=glintru_train_workers
TMP=$(mktemp -d /tmp/glintru-tw.XXXXXX)
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null; done   # this script's own psql sessions
  wait 2>/dev/null
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

# pids of the training workers of backend $1
# (the title ends with a space: PostgreSQL pads an empty activity)
workers_of() { ps -eo pid=,args= | awk -v re="glintru training worker [0-9]+ for PID $1 *\$" '$0 ~ re { print $1 }'; }
# the pid of the session with application_name $1, waiting up to 10 s for it and its $2 workers
leader_with_workers() {
  local pid=""
  for _ in $(seq 1 100); do
    pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$1' AND state = 'active'")
    if [ -n "$pid" ] && [ "$(workers_of "$pid" | wc -l)" = "$2" ]; then echo "$pid"; return 0; fi
    sleep 0.1
  done
  return 1
}
# wait up to 10 s until backend $1 has no training worker left; true if none is left
no_workers_left() {
  for _ in $(seq 1 100); do
    [ -z "$(workers_of "$1")" ] && return 0
    sleep 0.1
  done
  return 1
}
ms() { date +%s%N | cut -c1-13; }

echo "== training workers (database $DB)"
make -s build/glintru-train >"$TMP/build.log" 2>&1 || { cat "$TMP/build.log"; bad "build glintru-train"; test_summary train_workers; exit 1; }
PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null \
  || { bad "create database $DB"; test_summary train_workers; exit 1; }
q -c "CREATE EXTENSION glintru" -c "CREATE TABLE ev AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20, 7)" \
  || { bad "setup"; test_summary train_workers; exit 1; }
# the same rows for the command line, in the same order (user, ts)
q -c "\copy (SELECT user_id, item_id, ts FROM ev ORDER BY user_id, ts) TO '$TMP/ev.tsv' WITH (FORMAT csv, DELIMITER E'\t', HEADER)"

# ---- (a) same model as the command line ----
for n in 2 3; do
  build/glintru-train --data "$TMP/ev.tsv" --out "$TMP/cli$n.safetensors" --d 16 --heads 2 --max-seq-len 10 \
    --epochs 3 --seed 11 --threads "$n" --quiet 2>"$TMP/cli$n.log" || { cat "$TMP/cli$n.log"; bad "glintru-train --threads $n"; continue; }
  q -c "SET client_min_messages = warning" \
    -c "SELECT glintru_train('par$n', 'ev', options => '{\"d\": 16, \"heads\": 2, \"max_seq_len\": 10, \"epochs\": 3, \"seed\": 11, \"workers\": $n}')" >/dev/null \
    || { bad "glintru_train workers => $n"; continue; }
  db=$(q -c "SELECT encode(sha256(weights), 'hex') FROM glintru.models WHERE name = 'par$n'")
  cli=$(sha256sum "$TMP/cli$n.safetensors" | cut -d' ' -f1)
  if [ "$db" = "$cli" ]; then
    ok "workers => $n and glintru-train --threads $n: the same model, byte for byte (sha256 ${db:0:16}…)"
  else
    bad "workers => $n: database model sha256 $db, glintru-train --threads $n $cli"
  fi
done

LONG='{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 100000, "patience": 100000, "batch_size": 1, "workers": 3}'
# start_long NAME APP: a long parallel training in the background, its output in
# $TMP/NAME.out (statement_timeout: a failing test does not leave it running)
start_long() {
  PGAPPNAME=$2 psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "SET statement_timeout = '60s'" \
    -c "SELECT glintru_train('$1', 'ev', options => '$LONG')" >"$TMP/$1.out" 2>&1 &
}
stored() { q -c "SELECT count(*) FROM glintru.models WHERE name = '$1'"; }

# ---- (b) pg_cancel_backend ----
start_long cancelled tw_cancel
bg=$!
if leader=$(leader_with_workers tw_cancel 2); then
  t0=$(ms)
  q -c "SELECT pg_cancel_backend($leader)" >/dev/null
  wait "$bg"
  t1=$(ms)
  if grep -q "canceling statement due to user request" "$TMP/cancelled.out" && [ "$(stored cancelled)" = 0 ] && no_workers_left "$leader"; then
    ok "pg_cancel_backend stops a training with 2 workers: cancel error after $(( (t1 - t0) )) ms, nothing stored, no worker left"
  else
    bad "pg_cancel_backend: $(cat "$TMP/cancelled.out"); stored $(stored cancelled); workers left: $(workers_of "$leader" | tr '\n' ' ')"
  fi
else
  bad "the training with workers => 3 did not show 2 training workers"
  wait "$bg"
fi

# ---- (c) a worker dies ----
start_long dying tw_dying
bg=$!
if leader=$(leader_with_workers tw_dying 2); then
  victim=$(workers_of "$leader" | head -1)
  kill -TERM "$victim"
  wait "$bg"
  if grep -q "ERROR:  training failed: training worker [0-9] exited before finishing its part" "$TMP/dying.out" \
     && [ "$(stored dying)" = 0 ] && no_workers_left "$leader"; then
    ok "a worker killed with SIGTERM fails the training: $(sed -n 's/^ERROR:  //p' "$TMP/dying.out" | head -1); nothing stored, no worker left"
  else
    bad "dying worker: $(cat "$TMP/dying.out"); stored $(stored dying); workers left: $(workers_of "$leader" | tr '\n' ' ')"
  fi
else
  bad "the training with workers => 3 did not show 2 training workers"
  wait "$bg"
fi

# ---- (d) the leader is terminated ----
start_long terminated tw_term
bg=$!
if leader=$(leader_with_workers tw_term 2); then
  q -c "SELECT pg_terminate_backend($leader)" >/dev/null
  wait "$bg"
  if [ "$(stored terminated)" = 0 ] && no_workers_left "$leader"; then
    ok "pg_terminate_backend of the leader: its workers exit, nothing stored"
  else
    bad "terminated leader: stored $(stored terminated); workers left: $(workers_of "$leader" | tr '\n' ' ')"
  fi
else
  bad "the training with workers => 3 did not show 2 training workers"
  wait "$bg"
fi

# ---- (e) more workers than max_worker_processes has free ----
# 16 asked, 15 background workers to register: the cluster's slots run out, the
# NOTICE says how many parts ran, and the model is glintru-train's for that many
if [ "$(q -c "SHOW max_worker_processes")" -ge 16 ]; then
  echo "skipped: (e) max_worker_processes >= 16 has room for 15 workers"
else
q -c "SET client_min_messages = notice" \
  -c "SELECT glintru_train('many', 'ev', options => '{\"d\": 16, \"heads\": 2, \"max_seq_len\": 10, \"epochs\": 1, \"seed\": 11, \"workers\": 16}')" \
  >/dev/null 2>"$TMP/many.log"
m=$(sed -n 's/.*training workers started, training with workers = \([0-9]*\)$/\1/p' "$TMP/many.log")
if [ -n "$m" ] && [ "$m" -lt 16 ]; then
  build/glintru-train --data "$TMP/ev.tsv" --out "$TMP/many.safetensors" --d 16 --heads 2 --max-seq-len 10 \
    --epochs 1 --seed 11 --threads "$m" --quiet 2>/dev/null
  if [ "$(q -c "SELECT encode(sha256(weights), 'hex') FROM glintru.models WHERE name = 'many'")" = \
       "$(sha256sum "$TMP/many.safetensors" | cut -d' ' -f1)" ]; then
    ok "workers => 16 beyond max_worker_processes ($(q -c "SHOW max_worker_processes")): trained with $m, a NOTICE says so, the model is glintru-train --threads $m's"
  else
    bad "workers => 16 ran with $m workers but the model differs from glintru-train --threads $m"
  fi
else
  bad "workers => 16: no NOTICE about fewer workers ($(cat "$TMP/many.log" | grep -v epoch | head -3))"
fi
fi

# the server is still up and trains again in parallel after all that
if q -c "SET client_min_messages = warning" \
     -c "SELECT glintru_train('again', 'ev', options => '{\"d\": 16, \"heads\": 2, \"max_seq_len\": 10, \"epochs\": 1, \"workers\": 2}') > 0" >/dev/null; then
  ok "the server trains with workers again afterwards"
else
  bad "training after the failures"
fi
test_summary train_workers
