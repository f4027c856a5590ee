#!/usr/bin/env bash
# test/memory.sh — the model cache's two modes and its budget (issue 2, item 3):
# with shared_preload_libraries a model that does not fit
# glintru.shared_memory_size gets an error naming the setting, and smaller
# models are still served; without preloading each backend keeps a private
# copy and everything works.  Prints ok:/FAILED: lines; exit 1 on failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. tools/cluster.sh
. test/lib.sh
DIR=$(mktemp -d /tmp/glintru-memory.XXXXXX); chmod 755 "$DIR"
trap 'cluster_stop "$DIR/a"; cluster_stop "$DIR/b"; rm -rf "$DIR"' EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# a model of ~7 MB in memory (2,000 items, d 64, with per-item tables), trained in SQL
SETUP="CREATE EXTENSION glintru;
CREATE TABLE ev AS SELECT * FROM glintru_synthetic_interactions(400, 2000, 10);
SET client_min_messages = warning;
SELECT glintru_train('big', 'ev', options => '{\"d\": 64, \"heads\": 4, \"max_seq_len\": 8, \"epochs\": 1}') > 0;
SELECT glintru_train('small', 'ev', options => '{\"d\": 4, \"heads\": 1, \"max_seq_len\": 8, \"epochs\": 1}') > 0;"

GLINTRU_PORT=5483 cluster_start "$DIR/a" glintru.shared_memory_size=1MB || exit 1
q -c "$SETUP" >/dev/null || bad "setup with a 1 MB budget"
err=$(q -c "SELECT count(*) FROM glintru_recommend_history('big', ARRAY[1001, 1002])" 2>&1)
case "$err" in
  *"glintru.shared_memory_size = 1 MB"*) ok "a model larger than the budget: $(echo "$err" | head -1 | sed 's/^psql:[^:]*: //')" ;;
  *) bad "no budget error for a model larger than glintru.shared_memory_size: $err" ;;
esac
echo "$err" | grep -q "HINT:.*glintru.shared_memory_size" && ok "the hint names the setting" || bad "no hint naming the setting"
n=$(q -c "SELECT count(*) FROM glintru_recommend_history('small', ARRAY[1001, 1002], 5)" 2>&1)
[ "$n" = 5 ] && ok "a model that fits is served beside it" || bad "small model not served: $n"
mode=$(q -c "SELECT mode || ' ' || (used_bytes > 0) FROM glintru_memory()")
[ "$mode" = "shared true" ] && ok "glintru_memory(): shared, memory in use reported" || bad "glintru_memory(): $mode"
cluster_stop "$DIR/a"

# no preloading: private copies
GLINTRU_PORT=5484 cluster_start "$DIR/b" shared_preload_libraries= || exit 1
q -c "$SETUP" >/dev/null || bad "setup without preloading"
r1=$(q -c "SELECT string_agg(item_id::text, ',') FROM glintru_recommend_history('big', ARRAY[1001, 1002], 5)")
r2=$(q -c "SELECT string_agg(item_id::text, ',') FROM glintru_recommend_history('big', ARRAY[1001, 1002], 5)")
[ -n "$r1" ] && [ "$r1" = "$r2" ] && ok "without preloading: served from a private copy ($r1)" || bad "private mode: '$r1' vs '$r2'"
mode=$(q -c "SELECT glintru_recommend_history('big', ARRAY[1001], 1) IS NOT NULL; SELECT mode || ' ' || (used_bytes > 0) || ' ' || models FROM glintru_memory()" | tail -1)
[ "$mode" = "private true 1" ] && ok "glintru_memory(): private copy reported" || bad "glintru_memory() without preloading: $mode"
inshm=$(q -c "SELECT bool_or(in_shared_memory) FROM glintru_models()")
[ "$inshm" = f ] && ok "glintru_models(): nothing in shared memory without preloading" || bad "in_shared_memory without preloading: $inshm"
test_summary "memory"
