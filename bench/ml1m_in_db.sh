#!/usr/bin/env bash
# bench/ml1m_in_db.sh — the README's real-data recipe, measured: load ML-1M
# into a table with COPY, train in the database (or load a model trained by
# glintru-train: MODEL=file.safetensors), glintru_evaluate (full and pop100,
# beside popularity), glintru_attach, glintru_recommend.  Not CI: training
# ML-1M takes tens of minutes.
#
#   bash bench/ml1m_in_db.sh                       # trains with the published setting
#   MODEL=/tmp/ml1m.safetensors bash bench/ml1m_in_db.sh   # serves a given model
#   EPOCHS=5 bash bench/ml1m_in_db.sh              # a shorter training
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-$(pwd)/../shared/data/ml-1m/interactions.tsv.xz}
EPOCHS=${EPOCHS:-200}
. tools/cluster.sh
DIR=$(mktemp -d /tmp/glintru-ml1m.XXXXXX); chmod 755 "$DIR"
trap 'cluster_stop "$DIR"; rm -rf "$DIR"' EXIT
cluster_start "$DIR" || exit 1
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION glintru"
q -c "CREATE TABLE ratings (user_id bigint, item_id bigint, seq bigint)"
t0=$(date +%s.%N)
xz -dc "$DATA" | q -c "COPY ratings FROM STDIN WITH (FORMAT text, HEADER true)"
q -c "CREATE INDEX ON ratings (user_id, seq)"
echo "COPY of $(q -At -c 'SELECT count(*) FROM ratings') rows: $(echo "$(date +%s.%N) - $t0" | bc) s"
if [ -n "${MODEL:-}" ]; then
  w=$(od -An -v -tx1 "$MODEL" | tr -d ' \n')
  echo "SELECT glintru_load_model('ml1m', decode('$w', 'hex'))" | q -At
else
  t0=$(date +%s.%N)
  q -c "SELECT glintru_train('ml1m', 'ratings', order_column => 'seq',
          options => '{\"d\": 64, \"heads\": 4, \"max_seq_len\": 200, \"min_item_count\": 5, \"epochs\": $EPOCHS}')"
  echo "training: $(echo "$(date +%s.%N) - $t0" | bc) s"
fi
for p in full pop100; do
  echo "== glintru_evaluate, protocol $p (test split, SPEC §4)"
  t0=$(date +%s.%N)
  q -c "SELECT metric, round(value::numeric, 4) AS value FROM glintru_evaluate('ml1m', 'ratings', order_column => 'seq', protocol => '$p')"
  echo "evaluation: $(echo "$(date +%s.%N) - $t0" | bc) s"
done
t0=$(date +%s.%N)
q -c "SELECT glintru_attach('ml1m', 'ratings', order_column => 'seq') AS users_with_state"
echo "attach (backfill): $(echo "$(date +%s.%N) - $t0" | bc) s"
q -c "SELECT * FROM glintru_recommend(1, 10)"
q -c "SELECT count(*) AS problems FROM glintru_verify_state('ratings')"
