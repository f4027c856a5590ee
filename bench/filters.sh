#!/usr/bin/env bash
# bench/filters.sh — business filters in one run (~2 minutes).
#
#   bench/filters.sh            (as root, like test/run.sh, or as a user that may initdb)
#
# 1. builds a copy of the working tree into a private PostgreSQL tree and
#    starts a throwaway cluster (bench/lib.sh), loads the ml1m-shape model
#    (../shared/golden/ml1m-shape: 3416 items, d 64) as 'm' and a synthetic
#    1,000,000-item d-64 model (bench/score_bench.c gen; ids = rows) as 'big';
# 2. per model, one fixed history of 50 random known items, and in a PL/pgSQL
#    loop inside one statement (no client round trip), ms per call of
#      - glintru_recommend_history(model, h, 10)                 unfiltered top-10
#      - ... candidates => 100 random known items                candidate ranking
#      - glintru_score_history(model, h, <the same 100 items>)   scoring them
#      - ... exclude => 10 %, 50 %, 90 % of the catalogue         filtered top-10
#    and the ratio of each to the unfiltered call, side by side;
# 3. checks on the way that the candidate top-10 is the full ranking
#    restricted to the candidates (printed as a boolean).
# Timings come from one noisy machine and are printed, never judged.
#
# Knobs: GLINTRU_SHARED (default ../shared), BENCH_SECONDS (per measurement, default 2),
# BENCH_PORT, BENCH_SEED, BENCH_REV=<git rev>, GLINTRU_BENCH_BUILD=0, BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${GLINTRU_SHARED:-$ROOT/../shared}
MODEL=$SHARED/golden/ml1m-shape/model.safetensors
SECS=${BENCH_SECONDS:-2}
SEED=${BENCH_SEED:-20250}
. bench/lib.sh

[ -f "$MODEL" ] || { echo "missing $MODEL (set GLINTRU_SHARED)" >&2; exit 1; }

bench_init filters
bench_build
bench_score_tool

log "histories (50 random known ids, seed $SEED) and the synthetic 1M-item model"
H_M=$($SB hist "$MODEL" "$SEED" 50)
$SB gen "$W/big.safetensors" 1000000 64 4 200 "$SEED" >&2
H_BIG=$($SB hist "$W/big.safetensors" "$SEED" 50)
chmod 644 "$W"/*.safetensors

bench_cluster glintru.shared_memory_size=600MB fsync=off synchronous_commit=off jit=off
q -c "CREATE EXTENSION glintru" >/dev/null
q -c "SELECT glintru_load_model_file('m', '$MODEL')" >/dev/null
q -c "SELECT glintru_load_model_file('big', '$W/big.safetensors')" >/dev/null
# first use builds each model in shared memory: before timing anything
q -c "SELECT count(*) FROM glintru_recommend_history('m', '{1}', 10)" \
  -c "SELECT count(*) FROM glintru_recommend_history('big', '{1}', 10)" >/dev/null
log "models loaded"

to_array() { echo "{$(tr ' ' ',' <<<"$1")}"; }

# The catalogue's ids (those the model scores), and the filter sets drawn from them.
q -c "CREATE TABLE hist (model text PRIMARY KEY, h bigint[])" \
  -c "INSERT INTO hist VALUES ('m', '$(to_array "$H_M")'), ('big', '$(to_array "$H_BIG")')" \
  -c "CREATE TABLE known AS
      SELECT 'm'::text AS model, s.item_id
      FROM hist, glintru_score_history('m', hist.h,
             ARRAY(SELECT generate_series(1, greatest(10000, 2 * (SELECT max(x) FROM unnest(hist.h) x))))) s
      WHERE hist.model = 'm' AND s.score IS NOT NULL
      UNION ALL SELECT 'big', generate_series(1, 1000000)::bigint" \
  -c "SELECT setseed(0.25)" \
  -c "CREATE TABLE sets AS
      SELECT model, 'candidates 100'::text AS name, ARRAY(SELECT item_id FROM known k WHERE k.model = m.model ORDER BY random() LIMIT 100) AS ids
      FROM (VALUES ('m'), ('big')) m(model)
      UNION ALL
      SELECT model, 'exclude ' || p || ' %', ARRAY(SELECT item_id FROM known k WHERE k.model = m.model AND random() < p / 100.0)
      FROM (VALUES ('m'), ('big')) m(model), (VALUES (10), (50), (90)) pc(p)" >/dev/null
q -F ' | ' -c "SELECT model, count(*) AS items FROM known GROUP BY model ORDER BY model" >&2

# ms per call over secs seconds, in one statement; what = recommend | candidates | exclude | score
q -c "CREATE FUNCTION bench_loop(model text, what text, ids bigint[], secs float8) RETURNS float8
LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; n int := 0; el float8; h bigint[] := (SELECT hist.h FROM hist WHERE hist.model = bench_loop.model);
BEGIN
  t0 := clock_timestamp();
  LOOP
    IF what = 'candidates' THEN
      PERFORM count(*) FROM glintru_recommend_history(model, h, 10, candidates => ids);
    ELSIF what = 'exclude' THEN
      PERFORM count(*) FROM glintru_recommend_history(model, h, 10, exclude => ids);
    ELSIF what = 'score' THEN
      PERFORM count(*) FROM glintru_score_history(model, h, ids);
    ELSE
      PERFORM count(*) FROM glintru_recommend_history(model, h, 10);
    END IF;
    n := n + 1;
    el := extract(epoch FROM clock_timestamp() - t0);
    EXIT WHEN el >= secs;
  END LOOP;
  RETURN el * 1000 / n;
END \$\$" >/dev/null

log "measuring: ${SECS} s per case, 2 models x 6 cases"
q -c "CREATE TABLE res AS
  WITH c(ord, model, what, name) AS (VALUES
    (1, 'm', 'recommend', NULL), (2, 'm', 'candidates', 'candidates 100'), (3, 'm', 'score', 'candidates 100'),
    (4, 'm', 'exclude', 'exclude 10 %'), (5, 'm', 'exclude', 'exclude 50 %'), (6, 'm', 'exclude', 'exclude 90 %'),
    (7, 'big', 'recommend', NULL), (8, 'big', 'candidates', 'candidates 100'), (9, 'big', 'score', 'candidates 100'),
    (10, 'big', 'exclude', 'exclude 10 %'), (11, 'big', 'exclude', 'exclude 50 %'), (12, 'big', 'exclude', 'exclude 90 %'))
  SELECT ord, c.model, what, coalesce(c.name, 'unfiltered') AS name, cardinality(s.ids) AS n_ids,
         bench_loop(c.model, what, s.ids, $SECS) AS ms
  FROM c LEFT JOIN sets s ON s.model = c.model AND s.name = c.name ORDER BY ord" >/dev/null

# the candidate top-10 is the full ranking restricted to the candidates (same scores)
CHECK=$(q -c "SELECT bool_and(ok) FROM (
  SELECT (SELECT array_agg(row(item_id, score)) FROM glintru_recommend_history(s.model, h.h, 10, candidates => s.ids))
       = (SELECT (array_agg(row(item_id, score)) FILTER (WHERE item_id = ANY (s.ids)))[1:10]
          FROM glintru_recommend_history(s.model, h.h, 2000000)) AS ok
  FROM sets s JOIN hist h USING (model) WHERE s.name = 'candidates 100') x")

echo
echo "glintru filters — $SRCDESC"
echo "$(nproc) cores; ${SECS} s PL/pgSQL loop per case; history of 50 items; k = 10"
echo "candidate top-10 = full ranking restricted to the candidates, same scores: $CHECK"
echo
echo "model | case | function | ids | ms_per_call | vs_unfiltered | speedup" | column -t -s '|'
q -F ' | ' -P footer=off -c "SELECT r.model, r.name AS case, CASE r.what WHEN 'score' THEN 'glintru_score_history' ELSE 'glintru_recommend_history' END AS function,
       r.n_ids AS ids, round(r.ms::numeric, 3) AS ms_per_call,
       round((r.ms / u.ms)::numeric, 3) AS vs_unfiltered, round((u.ms / r.ms)::numeric, 1) AS speedup
FROM res r JOIN res u ON u.model = r.model AND u.what = 'recommend' ORDER BY r.ord" -A \
  | column -t -s '|'
