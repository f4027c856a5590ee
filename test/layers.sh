#!/usr/bin/env bash
# test/layers.sh — the PostgreSQL glue (src/pg) calls one way only.
#
# Each module of src/pg (x.c with its x.h) has a layer below; a file may
# include the headers of its own module and of lower layers, never of its
# own layer or a higher one, and the graph must have no cycle.  The graph is
# derived from the '#include "x.h"' lines and, when the objects are built
# and current, from the symbols each object file needs and defines (nm), so
# a call through a declaration copied by hand is caught too.  The numeric
# core (src/core) must include no PostgreSQL header and nothing of src/pg,
# and every SPI_connect / SPI_finish / SPI_execute* result must be checked.
#
# Prints ok: / FAILED: lines and exits non-zero on a failure.  Needs bash,
# coreutils (tsort) and, for the call graph, binutils (nm).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. test/lib.sh

# The layers, top to bottom; a module calls only modules of lower layers.
#   8 module     _PG_init, GUCs, shared memory hooks
#   8 jobs       background training jobs (run through train_sql)
#   7 train_sql  training and evaluation from SQL (stores through models)
#     citus_sql  glintru_citus_apply (applies the coordinator's operations), glintru_citus_sync
#   6 models, serve, trigger, verify, refresh: SQL entry points
#   5 attach     attach/detach, backfill, rebuild on a model replacement
#   4 state      glintru.user_state rows
#   3 cache, progress, stats, events: shared memory; the interactions table;
#     train_pool: the training engine's background workers and their segment
#     citus: Citus metadata, the operation log, routing (SQL to Citus only)
#   2 catalog    glintru.models / glintru.attachments rows, SPI, owner role
#   1 schema     table, index and column numbers (mirrors the SQL script)
#   0 src/core   the numeric core
declare -A RANK=(
  [module]=8 [jobs]=8 [train_sql]=7 [citus_sql]=7
  [models]=6 [serve]=6 [trigger]=6 [verify]=6 [refresh]=6
  [attach]=5 [state]=4 [cache]=3 [progress]=3 [stats]=3 [events]=3 [train_pool]=3 [citus]=3
  [catalog]=2 [schema]=1
)

PGINC=$(pg_config --includedir-server 2>/dev/null || echo /usr/include/postgresql/15/server)
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

# ---- every module has a layer ----
unranked=""
for f in src/pg/*.c src/pg/*.h; do
  m=$(basename "${f%.*}")
  [ -n "${RANK[$m]:-}" ] || unranked="$unranked $f"
done
[ -z "$unranked" ] && ok "every file of src/pg has a layer" || bad "no layer for:$unranked (add it to RANK in test/layers.sh)"

# check_edge FROM TO HOW: FROM may use TO only if TO is lower (or the same module)
upward=0
check_edge() {
  local from=$1 to=$2 how=$3
  [ "$from" = "$to" ] && return
  echo "$from $to" >>"$edges"
  local rf=${RANK[$from]:-} rt=${RANK[$to]:-}
  [ -z "$rf" ] || [ -z "$rt" ] && return
  if [ "$rt" -ge "$rf" ]; then
    bad "$how: $from (layer $rf) uses $to (layer $rt): not a lower layer"
    upward=$((upward + 1))
  fi
}

# ---- the include graph ----
n_inc=0
for f in src/pg/*.c src/pg/*.h; do
  from=$(basename "${f%.*}")
  while read -r h; do
    if [ -f "src/pg/$h" ]; then
      check_edge "$from" "$(basename "${h%.h}")" "$f includes \"$h\""
      n_inc=$((n_inc + 1))
    elif [ ! -f "src/core/$h" ] && [ ! -f "$PGINC/$h" ]; then
      bad "$f includes \"$h\", which is neither in src/pg, src/core nor PostgreSQL"
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done
[ "$upward" = 0 ] && ok "include graph: $n_inc includes of src/pg headers, none upward"

# ---- the call graph, from the object files ----
objs_current=1
for c in src/pg/*.c; do
  o=${c%.c}.o
  { [ -f "$o" ] && [ "$o" -nt "$c" ]; } || objs_current=0
done
if [ "$objs_current" = 1 ] && command -v nm >/dev/null; then
  upward=0
  declare -A DEF=()
  for o in src/pg/*.o src/core/*.o; do
    [ -f "$o" ] || continue
    while read -r sym; do DEF[$sym]=$o; done < <(nm --defined-only -g "$o" | awk '$2 ~ /[TDBRC]/ {print $3}')
  done
  n_calls=0
  for o in src/pg/*.o; do
    from=$(basename "${o%.o}")
    while read -r sym; do
      d=${DEF[$sym]:-}
      case "$d" in
        src/pg/*) check_edge "$from" "$(basename "${d%.o}")" "${o%.o}.c uses $sym"; n_calls=$((n_calls + 1)) ;;
      esac
    done < <(nm -u "$o" | awk '{print $2}')
  done
  for o in src/core/*.o; do
    [ -f "$o" ] || continue
    while read -r sym; do
      case "${DEF[$sym]:-}" in src/pg/*) bad "${o%.o}.c (numeric core) uses $sym of ${DEF[$sym]%.o}.c" ;; esac
    done < <(nm -u "$o" | awk '{print $2}')
  done
  [ "$upward" = 0 ] && ok "call graph (nm): $n_calls uses of other src/pg files' symbols, none upward"
else
  echo "skipped: call graph (build first: make; the objects are missing or older than their sources)"
fi

# ---- no cycle (independent of the layer numbers) ----
if sort -u "$edges" | tsort >/dev/null 2>"$edges.err"; then
  ok "no cycle among the $(cut -d' ' -f1 "$edges" | sort -u | wc -l) modules of src/pg that use another"
else
  bad "cycle in the src/pg graph: $(tr '\n' ' ' <"$edges.err")"
fi
rm -f "$edges.err"

# ---- the numeric core stays free of PostgreSQL and of the glue ----
core_bad=""
for f in src/core/*.c src/core/*.h; do
  while read -r h; do
    case "$h" in
      postgres.h | postgres_fe.h | c.h | fmgr.h | miscadmin.h | funcapi.h) core_bad="$core_bad $f:<$h>" ; continue ;;
    esac
    if [ -f "src/pg/$h" ]; then core_bad="$core_bad $f:\"$h\"(src/pg)"
    elif [ ! -f "src/core/$h" ] && [ -f "$PGINC/$h" ]; then core_bad="$core_bad $f:$h"
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]\([^">]*\)[">].*/\1/p' "$f")
done
[ -z "$core_bad" ] && ok "src/core includes no PostgreSQL header and nothing of src/pg" \
  || bad "src/core includes PostgreSQL or glue headers:$core_bad"

# ---- SPI results are checked ----
spi_bad=$(grep -nE '\bSPI_(connect|finish|execute[a-z_]*)\(' src/pg/*.c \
  | grep -vE 'glintru_spi_check\(SPI_|rc = SPI_|^src/pg/catalog\.c:[0-9]+:.*= SPI_(connect|finish)\(\)' || true)
[ -z "$spi_bad" ] && ok "every SPI_connect, SPI_finish and SPI_execute* result in src/pg is checked" \
  || bad "unchecked SPI call: $(echo "$spi_bad" | head -5 | tr '\n' ' ')"

test_summary layers
