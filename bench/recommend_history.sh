#!/usr/bin/env bash
# bench/recommend_history.sh — the issue-2 benchmark, in one run (~3-4 minutes).
#
#   bench/recommend_history.sh            (as root, like test/run.sh, or as a user that may initdb)
#
# 1. builds a copy of the working tree (or of git revision $BENCH_REV) and installs
#    it into a private, relocated copy of the PostgreSQL 15 installation under the
#    work dir (the system-wide install is left alone; GLINTRU_BENCH_BUILD=0 uses
#    the system-wide one instead), and builds bench/score_bench.c against the
#    same numeric core;
# 2. starts a throwaway cluster (private port and socket dir under /tmp,
#    shared_preload_libraries = glintru, glintru.shared_memory_size = 600MB),
#    loads ../shared/golden/ml1m-shape (3416 items, d 64, 4 heads, L 200) as
#    'm' and a synthetic 1,000,000-item d-64 model (random weights, written by
#    the core's safetensors writer) as 'big';
# 3. ml1m-shape, histories of 1, 50, 200, 1000 random known items:
#      - pgbench, one client, prepared, fixed statement
#        SELECT * FROM glintru_recommend_history('m', '{…}', 10): mean latency per call;
#      - the same call in a PL/pgSQL loop inside one statement (no client round trip);
#      - the numeric core alone, outside the server (bench/score_bench);
#      - the PyTorch reference (../shared/reference, /usr/bin/python3, eval,
#        no_grad, float32; 1 thread and all cores): user vector + scores + top-10;
#        its top-10 is compared with the extension's;
# 4. 1M items: the same in-database measurements (history of 50), the raw
#    sgemv + top-10 in C against a plain read of the 256 MB item table
#    (the memory-bandwidth bound), and PyTorch on the same model;
# 5. the catalogue-size sweep: a synthetic 100,000-item model ('mid') beside the two
#    above, history of 50: pgbench and PL/pgSQL loop, and the plain read of each
#    item table (the bound), one 'sweep' line per size (read by bench/plots.sh);
# 6. prints the table.  Timings come from one noisy 2-core machine and are
#    printed, never judged: the targets are shown beside them.
#
# Knobs: GLINTRU_SHARED (default ../shared), BENCH_SECONDS (per pgbench run, default 6),
# BENCH_PORT, BENCH_SEED, BENCH_REV=<git rev>, GLINTRU_BENCH_BUILD=0, BENCH_KEEP=1 (keep the work dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${GLINTRU_SHARED:-$ROOT/../shared}
MODEL=$SHARED/golden/ml1m-shape/model.safetensors
REF=$SHARED/reference
SECS=${BENCH_SECONDS:-6}
SEED=${BENCH_SEED:-20250}
. bench/lib.sh

[ -f "$MODEL" ] || { echo "missing $MODEL (set GLINTRU_SHARED)" >&2; exit 1; }

bench_init bench
bench_build
bench_score_tool

LENS="1 50 200 1000"
log "histories ($LENS items, random known ids, seed $SEED) and the synthetic 1M-item model"
# shellcheck disable=SC2086  # LENS is a list
$SB hist "$MODEL" "$SEED" $LENS >"$W/hist.txt"
$SB gen "$W/big.safetensors" 1000000 64 4 200 "$SEED" >&2
$SB hist "$W/big.safetensors" "$SEED" 50 >"$W/hist_big.txt"
$SB gen "$W/mid.safetensors" 100000 64 4 200 "$SEED" >&2
$SB hist "$W/mid.safetensors" "$SEED" 50 >"$W/hist_mid.txt"
chmod 644 "$W"/*.safetensors "$W"/*.txt

# ---- cluster ----
bench_cluster glintru.shared_memory_size=600MB fsync=off synchronous_commit=off max_wal_size=4GB jit=off
q -c "CREATE EXTENSION glintru" >/dev/null \
  || { echo "CREATE EXTENSION failed: is the working tree mid-edit? BENCH_REV=HEAD benchmarks the last commit" >&2; exit 1; }
q -c "SELECT glintru_load_model_file('m', '$MODEL')" >/dev/null
q -c "SELECT glintru_load_model_file('mid', '$W/mid.safetensors')" >/dev/null
t0=$(date +%s.%N)
q -c "SELECT glintru_load_model_file('big', '$W/big.safetensors')" >/dev/null
t1=$(date +%s.%N)
# first use builds each model in shared memory: do it before timing anything
q -c "SELECT count(*) FROM glintru_recommend_history('m', '{1}', 10)" \
  -c "SELECT count(*) FROM glintru_recommend_history('big', '{1}', 10)" \
  -c "SELECT count(*) FROM glintru_recommend_history('mid', '{1}', 10)" >/dev/null
t2=$(date +%s.%N)
log "$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "loaded; 1M model: glintru_load_model_file %.1f s, first use (built in shared memory) %.1f s", b - a, c - b }')"
q -F ' | ' -c "SELECT name, items, d, bytes, in_shared_memory FROM glintru_models()" \
  -c "SELECT * FROM glintru_memory()" >&2

# PL/pgSQL loop: mean ms per call over ~secs seconds, all inside one statement
q -c "CREATE FUNCTION public.bench_loop(model text, h bigint[], secs float8) RETURNS float8
LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; n int := 0; el float8;
BEGIN
  PERFORM count(*) FROM glintru_recommend_history(model, h, 10);
  t0 := clock_timestamp();
  LOOP
    PERFORM count(*) FROM glintru_recommend_history(model, h, 10);
    n := n + 1;
    el := extract(epoch FROM clock_timestamp() - t0);
    EXIT WHEN el >= secs;
  END LOOP;
  RETURN el * 1000 / n;
END \$\$"

to_array() { echo "{$(tr ' ' ',' <<<"$1")}"; }

# pgbench: one client, prepared, a fixed statement; 3 runs of SECS/3 s each (x2 for
# the 1M-item model), with a per-transaction log; a run's latency = mean over its
# transactions except the first two (a new connection's first calls pay for
# mapping the shared model and growing the backend's heap: see first_calls);
# prints the median of the 3 runs (ms)
ROUND=$(( SECS / 3 > 0 ? SECS / 3 : 1 ))
pgb() {  # model histline tag [seconds per run]
  local f="$W/stmt_$3.sql" r
  echo "SELECT * FROM glintru_recommend_history('$1', '$(to_array "$2")'::bigint[], 10);" >"$f"
  for r in 1 2 3; do
    rm -f "$W/pgblog_$3_$r".*
    (cd "$W" && pgbench -n -c 1 -M prepared -T "${4:-$ROUND}" -l --log-prefix="pgblog_$3_$r" -f "$f") \
      >"$W/pgbench_$3_$r.out" 2>&1 || { cat "$W/pgbench_$3_$r.out" >&2; echo NaN; continue; }
    cat "$W/pgblog_$3_$r".* | awk '$2 > 1 { s += $3; n++ } END { if (n) printf "%.4f\n", s / n / 1000; else print "NaN" }'
  done | sort -g | sed -n 2p
}
# the same call in a PL/pgSQL loop: median of 3 rounds (ms per call)
plp() {  # model histline secs_total
  q -c "SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 4)
        FROM (SELECT bench_loop('$1', '$(to_array "$2")', $3 / 3.0) AS ms FROM generate_series(1, 3)) r"
}
# first and second call in a fresh connection (attach to the shared model, first touch of its pages)
first_calls() {  # model histline
  psql -X -q -At -c '\timing on' \
    -c "SELECT count(*) FROM glintru_recommend_history('$1', '$(to_array "$2")', 10)" \
    -c "SELECT count(*) FROM glintru_recommend_history('$1', '$(to_array "$2")', 10)" \
    | awk '/^Time:/ {printf "%s%s", s, $2; s=" / "} END {print " ms"}'
}

declare -A PGB LOOP CORE CORE_FWD TORCH1 TORCHN TOPG TOPT
while read -r line; do
  n=$(wc -w <<<"$line")
  log "in-database, history of $n items: pgbench ${SECS}s, PL/pgSQL loop"
  PGB[$n]=$(pgb m "$line" "m$n")
  LOOP[$n]=$(plp m "$line" "$SECS")
  TOPG[$n]=$(q -c "SELECT string_agg(item_id::text, ' ') FROM glintru_recommend_history('m', '$(to_array "$line")', 10)")
done <"$W/hist.txt"

log "numeric core outside the server (bench/score_bench forward)"
$SB forward "$MODEL" "$W/hist.txt" 2 >"$W/core.txt"
while read -r _ n fwd all; do
  n=${n#n=}; CORE_FWD[$n]=${fwd#fwd_ms=}; CORE[$n]=${all#all_ms=}
done < <(grep '^RESULT' "$W/core.txt")

NCPU=$(nproc)
TORCH_OK=0
if [ -d "$REF" ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  TORCH_OK=1
  log "PyTorch reference, threads 1 and $NCPU"
  /usr/bin/python3 bench/torch_forward.py "$REF" "$MODEL" "$W/hist.txt" 2 "1,$NCPU" >"$W/torch.txt" 2>"$W/torch.err" \
    || { cat "$W/torch.err" >&2; TORCH_OK=0; }
  while read -r _ t n ms _; do
    t=${t#threads=}; n=${n#n=}; ms=${ms#ms=}
    if [ "$t" = 1 ]; then TORCH1[$n]=$ms; else TORCHN[$n]=$ms; fi
  done < <(grep '^RESULT' "$W/torch.txt")
  while read -r _ n rest; do TOPT[${n#n=}]=$rest; done < <(grep '^TOP' "$W/torch.txt")
else
  log "no PyTorch for /usr/bin/python3 or no $REF: torch columns skipped"
fi

# ---- 1M items ----
BIGH=$(cat "$W/hist_big.txt")
log "1M items, history of 50: pgbench $((6 * ROUND))s, PL/pgSQL loop"
BIG_PGB=$(pgb big "$BIGH" big $((2 * ROUND)))
BIG_LOOP=$(plp big "$BIGH" "$SECS")
FIRST_M=$(first_calls m "$(sed -n 3p "$W/hist.txt")")
FIRST_BIG=$(first_calls big "$BIGH")
log "1M items: raw sgemv + top-10 in C (bench/score_bench score)"
$SB score "$W/big.safetensors" 1.5 >"$W/score.txt"
BIG_TORCH1=NaN; BIG_TORCHN=NaN
if [ "$TORCH_OK" = 1 ]; then
  log "1M items: PyTorch reference"
  /usr/bin/python3 bench/torch_forward.py "$REF" "$W/big.safetensors" "$W/hist_big.txt" 3 "1,$NCPU" >"$W/torch_big.txt" 2>>"$W/torch.err" || true
  BIG_TORCH1=$(awk '/^RESULT threads=1 / {sub("ms=","",$4); print $4}' "$W/torch_big.txt")
  BIG_TORCHN=$(awk -v t="threads=$NCPU" '$1=="RESULT" && $2==t {sub("ms=","",$4); print $4}' "$W/torch_big.txt")
  BIG_TOPT=$(awk '/^TOP/ {$1=""; $2=""; sub(/^  /,""); print}' "$W/torch_big.txt")
  BIG_TOPG=$(q -c "SELECT string_agg(item_id::text, ' ') FROM glintru_recommend_history('big', '$(to_array "$BIGH")', 10)")
fi

# ---- catalogue-size sweep: history of 50, the three models ----
log "catalogue sweep: 100k items, history of 50 (pgbench, PL/pgSQL loop); item-table reads of 3416 and 100k"
MIDH=$(cat "$W/hist_mid.txt")
MID_PGB=$(pgb mid "$MIDH" mid)
MID_LOOP=$(plp mid "$MIDH" "$SECS")
bound_ms() { $SB score "$1" 1.5 | awk '/^RESULT/ {sub("read_ms=", "", $2); print $2}'; }
M_RD=$(bound_ms "$MODEL")
MID_RD=$(bound_ms "$W/mid.safetensors")

# ---- table ----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.1fx", a / b; else printf "-" }'; }
agree() { if [ "$TORCH_OK" != 1 ]; then echo "-"; elif [ "$1" = "$2" ]; then echo same; else echo DIFF; fi; }
echo
echo "glintru_recommend_history(model, history, 10), single client; $(nproc) cores, shared machine — ratios are from this run"
echo "model ml1m-shape: 3416 items, d 64, 4 heads, L 200.  ms per call."
echo "Every time is a median of batch means (3 pgbench runs, 3 PL/pgSQL rounds, 5 batches elsewhere)."
echo "  pgbench  = pgbench -n -c 1 -M prepared -T $ROUND (x3; 1M: -T $((2 * ROUND)) x3), fixed statement, client round trip included,"
echo "             first two calls of each connection left out (see 'fresh connection' below)"
echo "  plpgsql  = the call in a PL/pgSQL loop (in-database time per call, no round trip)"
echo "  core     = numeric core outside the server: forward + sgemv + top-10 (forward alone)"
echo "  torch/1, torch/$NCPU = PyTorch reference with 1 and $NCPU threads (torch's default here: $(grep -o 'default threads [0-9]*' "$W/torch.err" 2>/dev/null | head -1 | awk '{print $3}')); user vector + scores + top-10"
echo "  ratios   = torch ms / glintru pgbench ms;  top10 = extension's top-10 ids equal torch's"
echo
printf '%-18s %9s %9s %18s %9s %9s %12s %12s %6s\n' case "pgbench" "plpgsql" "core (fwd)" "torch/1" "torch/$NCPU" "torch1/pgb" "torch$NCPU/pgb" top10
for n in $LENS; do
  printf '%-18s %9s %9s %18s %9s %9s %12s %12s %6s\n' "history $n" "${PGB[$n]}" "${LOOP[$n]}" \
    "${CORE[$n]} (${CORE_FWD[$n]})" "${TORCH1[$n]:--}" "${TORCHN[$n]:--}" \
    "$(ratio "${TORCH1[$n]:-0}" "${PGB[$n]}")" "$(ratio "${TORCHN[$n]:-0}" "${PGB[$n]}")" \
    "$(agree "${TOPG[$n]}" "${TOPT[$n]:-}")"
done
read -r RD _ _ GT _ _ < <(grep '^RESULT' "$W/score.txt" | sed 's/[a-z_]*=//g; s/RESULT //')
printf '%-18s %9s %9s %18s %9s %9s %12s %12s %6s\n' "1M items, hist 50" "$BIG_PGB" "$BIG_LOOP" \
  "$GT (-)" "$BIG_TORCH1" "$BIG_TORCHN" "$(ratio "$BIG_TORCH1" "$BIG_PGB")" "$(ratio "$BIG_TORCHN" "$BIG_PGB")" \
  "$(agree "${BIG_TOPG:-}" "${BIG_TOPT:-}")"
echo
echo "1M items x d 64 (256 MB item table), numeric core outside the server, ms per call:"
sed 's/^/  /' "$W/score.txt" | grep -v RESULT
printf '  bandwidth bound (plain read of 256 MB) %.1f ms; in-database %s ms = %s of the bound\n' "$RD" "$BIG_PGB" \
  "$(ratio "$BIG_PGB" "$RD")"
echo
echo "catalogue-size sweep (history of 50, d 64; ml1m-shape is the trained model, the others random weights), ms per call:"
printf '  %-6s %9s %9s %9s %12s\n' sweep items pgbench plpgsql "bound(read)"
printf '  %-6s %9s %9s %9s %12s\n' sweep 3416 "${PGB[50]}" "${LOOP[50]}" "$M_RD"
printf '  %-6s %9s %9s %9s %12s\n' sweep 100000 "$MID_PGB" "$MID_LOOP" "$MID_RD"
printf '  %-6s %9s %9s %9s %12s\n' sweep 1000000 "$BIG_PGB" "$BIG_LOOP" "$RD"
echo "first / second call in a fresh connection: ml1m-shape, history 200: $FIRST_M; 1M items: $FIRST_BIG"
echo
echo "targets (issue 2): history 200 < 1 ms/call -> pgbench ${PGB[200]} ms, plpgsql ${LOOP[200]} ms;" \
  "1M catalogue < 40 ms/call -> pgbench $BIG_PGB ms, plpgsql $BIG_LOOP ms"
log "done"
