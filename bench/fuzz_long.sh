#!/usr/bin/env bash
# bench/fuzz_long.sh [SECONDS] — the long fuzzing run of the safetensors and
# TSV readers (default 1800 s per target, both targets in parallel), with a
# corpus kept in build/fuzz/corpus so successive runs build on each other.
# Same harness, sanitizers and regression replay as the CI run
# (test/fuzz/run.sh); a crash leaves its input in build/fuzz/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
FUZZ_SECONDS=${1:-${FUZZ_SECONDS:-1800}} FUZZ_CORPUS=${FUZZ_CORPUS:-$(pwd)/build/fuzz/corpus} \
  exec bash test/fuzz/run.sh
