#!/usr/bin/env bash
# test/fuzz/run.sh — build the libFuzzer targets of the numeric core outside
# the server (clang, -fsanitize=fuzzer,address,undefined), replay every
# regression input under test/fuzz/regressions/, then fuzz each target for a
# bounded time (both targets in parallel).
#
#   bash test/fuzz/run.sh                 # CI: 30 s per target, fresh corpus
#   FUZZ_SECONDS=1800 FUZZ_CORPUS=build/fuzz/corpus bash test/fuzz/run.sh
#                                         # long run, corpus kept (bench/fuzz_long.sh)
#
# Targets: fuzz_safetensors (glintru_safetensors_load + forward pass + write/read
# round trip of what it accepts) and fuzz_tsv (glintru_read_interactions +
# splits + item filter), the latter only when src/data.h declares the reader.
# Seeds are generated at run time from test/data/small/model.safetensors
# (make_seeds.py).  A crash leaves its input in build/fuzz/artifacts/: copy it
# to test/fuzz/regressions/<target>/ to make it a regression test.
# Prints ok:/FAILED: lines and exits non-zero on any failure.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
OUT=${FUZZ_OUT:-$ROOT/build/fuzz}
. test/lib.sh

# ---- toolchain: clang + the libFuzzer runtime (Debian 12: clang-14, libclang-rt-14-dev)
CLANG=${CLANG:-$(command -v clang || command -v clang-14 || true)}
have_fuzzer() {
  [ -n "$CLANG" ] && echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}' |
    "$CLANG" -x c -fsanitize=fuzzer,address,undefined - -o /tmp/grel-fuzz-probe.$$ >/dev/null 2>&1
  local r=$?; rm -f /tmp/grel-fuzz-probe.$$; return $r
}
if ! have_fuzzer; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing clang and libclang-rt-14-dev"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev \
      >/tmp/grel-fuzz-apt.log 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >>/tmp/grel-fuzz-apt.log 2>&1; }
    CLANG=$(command -v clang || command -v clang-14 || true)
  fi
  have_fuzzer || { bad "no clang with libFuzzer (apt-get install clang libclang-rt-14-dev)"; exit 1; }
fi
command -v python3 >/dev/null || { bad "python3 is needed to generate the seed corpus"; exit 1; }

# ---- build
SRC=${GLINTRU_FUZZ_SRC:-src/core}     # another tree's src/core (e.g. with a fix applied) for checking a patch
OB_INC=/usr/include/x86_64-linux-gnu/openblas-serial
OB_LIB=/usr/lib/x86_64-linux-gnu/openblas-serial
CFLAGS="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=all -I$OB_INC -I$SRC"
LIBS="-L$OB_LIB -Wl,-rpath,$OB_LIB -lopenblas -lm"
CORE="$SRC/model.c $SRC/kernels.c $SRC/forward.c $SRC/rank.c $SRC/safetensors.c $SRC/util.c"
mkdir -p "$OUT/artifacts"
targets=(safetensors)
have_tsv=0
[ -f "$SRC/data.h" ] && [ -f "$SRC/data.c" ] && grep -q 'glintru_read_interactions' "$SRC/data.h" && have_tsv=1
# the two targets build in parallel
# shellcheck disable=SC2086
"$CLANG" $CFLAGS test/fuzz/fuzz_safetensors.c $CORE -o "$OUT/fuzz_safetensors" $LIBS >"$OUT/build-safetensors.log" 2>&1 &
b1=$!
if [ "$have_tsv" = 1 ]; then
  # shellcheck disable=SC2086
  "$CLANG" $CFLAGS test/fuzz/fuzz_tsv.c "$SRC/data.c" $CORE -o "$OUT/fuzz_tsv" $LIBS >"$OUT/build-tsv.log" 2>&1 &
  b2=$!
fi
if wait "$b1"; then
  ok "built fuzz_safetensors ($CLANG, ASan+UBSan+libFuzzer)"
else
  cat "$OUT/build-safetensors.log"; bad "build fuzz_safetensors"; exit 1
fi
if [ "$have_tsv" = 1 ]; then
  if wait "$b2"; then ok "built fuzz_tsv"; targets+=(tsv); else cat "$OUT/build-tsv.log"; bad "build fuzz_tsv"; fi
else
  echo "skipped: fuzz_tsv ($SRC/data.h does not declare glintru_read_interactions)"
fi

export GLINTRU_FUZZ_MODEL=$ROOT/test/data/small/model.safetensors
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---- seeds (generated, never committed)
SEEDS=$(mktemp -d /tmp/grel-fuzz-seeds.XXXXXX)
trap 'rm -rf "$SEEDS" ${FRESH_CORPUS:+"$FRESH_CORPUS"}' EXIT
python3 test/fuzz/make_seeds.py "$GLINTRU_FUZZ_MODEL" "$SEEDS/safetensors" "$SEEDS/tsv" >/dev/null \
  || { bad "seed generation"; exit 1; }

# ---- regressions (one by one) and seeds replayed: every input must run clean
fuzz_targets=()
for t in "${targets[@]}"; do
  clean=1
  for f in test/fuzz/regressions/"$t"/*; do
    if "$OUT/fuzz_$t" "$f" >"$OUT/replay.log" 2>&1; then
      ok "fuzz_$t regression $(basename "$f")"
    else
      grep -E 'ERROR: |SUMMARY|runtime error|fuzz_[a-z]+: |^original|^with a' "$OUT/replay.log" | head -6
      bad "fuzz_$t regression $(basename "$f") fails (see test/fuzz/regressions/README.md)"; clean=0
    fi
  done
  seeds=("$SEEDS/$t"/*)
  if "$OUT/fuzz_$t" "${seeds[@]}" >"$OUT/replay-$t.log" 2>&1; then
    ok "fuzz_$t runs its ${#seeds[@]} seeds cleanly"
  else
    grep -E 'ERROR: |SUMMARY|runtime error|fuzz_[a-z]+: |Running:' "$OUT/replay-$t.log" | tail -8
    bad "fuzz_$t seeds (log: $OUT/replay-$t.log)"; clean=0
  fi
  if [ "$clean" = 1 ]; then fuzz_targets+=("$t"); else echo "skipped: fuzzing fuzz_$t (a known input already fails)"; fi
done

# ---- bounded fuzzing, targets in parallel
if [ -n "${FUZZ_CORPUS:-}" ]; then CORPUS=$FUZZ_CORPUS; else FRESH_CORPUS=$(mktemp -d /tmp/grel-fuzz-corpus.XXXXXX); CORPUS=$FRESH_CORPUS; fi
declare -A pids
for t in "${fuzz_targets[@]}"; do
  mkdir -p "$CORPUS/$t"
  maxlen=$([ "$t" = safetensors ] && echo 16384 || echo 4096)
  "$OUT/fuzz_$t" "$CORPUS/$t" "$SEEDS/$t" -dict="test/fuzz/$t.dict" \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" >"$OUT/fuzz-$t.log" 2>&1 &
  pids[$t]=$!
done
for t in "${fuzz_targets[@]}"; do
  wait "${pids[$t]}"; rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz-$t.log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$OUT/fuzz-$t.log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$OUT/fuzz-$t.log" | tail -1)
  if [ "$rc" = 0 ]; then
    ok "fuzz_$t: ${runs:-?} inputs in ${SECONDS_PER_TARGET}s (${eps:-?} exec/s), $cov, no crash"
  else
    grep -E 'ERROR|SUMMARY|runtime error|fuzz_[a-z]+:|artifact' "$OUT/fuzz-$t.log" | tail -15
    bad "fuzz_$t found a crash (rc $rc, ${runs:-?} inputs; log $OUT/fuzz-$t.log; input in $OUT/artifacts/) —" \
        "copy it to test/fuzz/regressions/$t/"
  fi
done

test_summary fuzz
