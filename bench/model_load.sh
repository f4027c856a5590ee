#!/usr/bin/env bash
# bench/model_load.sh — how long a 1M-item model takes to load, by each route,
# and what the first recommendation after a load costs (issue 3, ~3 minutes).
#
#   bench/model_load.sh            (as root, like test/run.sh, or as a user that may initdb)
#
# 1. builds the working tree (or $BENCH_REV) into a private PostgreSQL tree
#    (bench/lib.sh) and writes a synthetic 1,000,000-item d-64 model (264 MB)
#    with bench/score_bench.c's gen;
# 2. a throwaway cluster (glintru preloaded, glintru.shared_memory_size = 1GB,
#    listening on 127.0.0.1 too: a client parameter goes over TCP, as an
#    application's does — see the note printed about Unix sockets);
# 3. loads the model (replace => true) BENCH_RUNS times by each route:
#      file  glintru_load_model_file(name, path)
#      prbf  glintru_load_model(name, pg_read_binary_file(path))
#      bin   glintru_load_model(name, $2), the bytes a binary parameter (psycopg 3)
#      text  the same through psycopg2, which sends bytea as an escaped
#            literal (parsed by the server's scanner: shown, not a target)
#    each time: the load's wall time, the loading backend's peak RSS (VmHWM,
#    shared pages it touched included) and the first and second
#    glintru_recommend_history call in a new connection after the commit;
# 4. prints medians, ratios to the file load, and the targets beside them.
#
# Needs /usr/bin/python3 with psycopg2 and psycopg (Debian: python3-psycopg2
# python3-psycopg); a route whose driver is missing is skipped.
# Knobs: BENCH_RUNS (default 3), BENCH_PORT, BENCH_SEED, BENCH_REV, GLINTRU_BENCH_BUILD=0, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=${BENCH_RUNS:-3}
SEED=${BENCH_SEED:-20250}
. bench/lib.sh

bench_init mload
bench_build
bench_score_tool
log "the synthetic 1M-item model"
$SB gen "$W/big.safetensors" 1000000 64 4 200 "$SEED" >&2
$SB hist "$W/big.safetensors" "$SEED" 50 >"$W/hist_big.txt"
chmod 644 "$W"/*.safetensors "$W"/*.txt
FILE_MB=$(awk -v b="$(stat -c %s "$W/big.safetensors")" 'BEGIN { printf "%.0f", b / 1048576 }')
HIST="{$(tr ' ' ',' <"$W/hist_big.txt")}"

bench_cluster glintru.shared_memory_size=1GB listen_addresses=127.0.0.1 fsync=off synchronous_commit=off \
  max_wal_size=4GB jit=off
q -c "CREATE EXTENSION glintru" >/dev/null
q -c "SELECT glintru_load_model_file('big', '$W/big.safetensors')" >/dev/null

has_py() { /usr/bin/python3 -c "import $1" 2>/dev/null; }
declare -A SECS HWM FIRST SECOND
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "NaN" }'; }
for mode in file prbf bin text; do
  case $mode in
    bin) has_py psycopg || { log "no psycopg 3 for /usr/bin/python3: route bin skipped"; continue; } ;;
    *) has_py psycopg2 || { log "no psycopg2 for /usr/bin/python3: route $mode skipped"; continue; } ;;
  esac
  n=$RUNS
  [ "$mode" = text ] && n=1     # ~15 s, and not a target
  log "route $mode: $n load(s)"
  : >"$W/res_$mode.txt"
  for _ in $(seq "$n"); do
    # bin and text go over TCP (PGHOST=127.0.0.1); the server-side routes over the socket
    host=$PGHOST
    case $mode in bin | text) host=127.0.0.1 ;; esac
    PGHOST=$host /usr/bin/python3 bench/model_load.py "$mode" "$W/big.safetensors" big "$HIST" >>"$W/res_$mode.txt"
  done
  field() { grep -o "$1=[0-9.]*" "$W/res_$mode.txt" | cut -d= -f2 | median; }
  SECS[$mode]=$(field secs); HWM[$mode]=$(field hwm_mb); FIRST[$mode]=$(field first_ms); SECOND[$mode]=$(field second_ms)
done
SHARED_BUFFERS=$(q -c "SELECT pg_size_pretty(pg_size_bytes(current_setting('shared_buffers')))")

# after a restart nothing is cached: prewarm builds it, and the first call is then warm too
as_pg "$PGBIN/pg_ctl" -D "$W/data" -w -m fast restart >/dev/null
t0=$(date +%s.%N)
q -c "SELECT glintru_prewarm('big')" >"$W/prewarm.txt"
t1=$(date +%s.%N)
PREWARM=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
PREWARM_OK=$(cat "$W/prewarm.txt")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2fx", a / b; else printf "-" }'; }
echo
echo "Loading a 1,000,000-item d-64 model ($FILE_MB MB file), $(nproc) cores, one run of this script;"
echo "medians of $RUNS loads (text: 1), each a replace (replace => true) of the same model."
echo "  peak RSS = VmHWM of the loading backend: its own memory plus the shared pages it touched"
echo "             (the model's copy in shared memory, and up to shared_buffers = $SHARED_BUFFERS of the table's writes)"
echo "  first / second = glintru_recommend_history(history of 50) in a new connection after the load"
echo
printf '%-44s %8s %9s %10s %9s %18s\n' route "secs" "vs file" "peak RSS" "vs file" "first / second ms"
for mode in file prbf bin text; do
  [ -n "${SECS[$mode]:-}" ] || continue
  case $mode in
    file) what="glintru_load_model_file" ;;
    prbf) what="glintru_load_model(pg_read_binary_file)" ;;
    bin) what="glintru_load_model, binary parameter (TCP)" ;;
    text) what="glintru_load_model, psycopg2 literal (TCP)" ;;
  esac
  printf '%-44s %8s %9s %7s MB %9s %18s\n' "$what" "${SECS[$mode]}" "$(ratio "${SECS[$mode]}" "${SECS[file]}")" \
    "${HWM[$mode]}" "$(ratio "${HWM[$mode]}" "$FILE_MB")" "${FIRST[$mode]} / ${SECOND[$mode]}"
done
echo "after a restart: glintru_prewarm('big') $PREWARM s, returned $PREWARM_OK (true: in shared memory)"
echo
echo "targets (issue 3): a bytea load (pg_read_binary_file, binary parameter) within 2x the file load ->" \
  "prbf $(ratio "${SECS[prbf]:-0}" "${SECS[file]:-0}"), bin $(ratio "${SECS[bin]:-0}" "${SECS[file]:-0}");" \
  "first call after a load as fast as the second; memory within about 2x the file"
echo "note: over a Unix socket a 264 MB parameter from psycopg 3 is slow on the client (libpq, non-blocking," \
  "moves the rest of its output buffer after each partial send): measured over TCP here"
log "done"
