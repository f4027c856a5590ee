#!/bin/sh
# train_ml1m.sh — quality and speed benchmark of the C training engine (not
# CI): trains GLINT-RU on ML-1M (5-core, L 200, d 64, 4 heads) and Amazon
# Beauty (L 50, d 64, 4 heads) with glintru-train, evaluates the test split
# with glintru-eval (full ranking and pop100) beside a popularity baseline,
# and prints a table with seconds per epoch (wall and CPU) and total time,
# and the training settings the trainer chose (AdamW, clipping, dropouts from
# the data's density).  The training logs (one line per epoch, with the
# validation NDCG@10) stay in OUT for bench/plots.sh --quality.
#
#   make -f tools/Makefile.train train-tools && bench/train_ml1m.sh
#
# Environment: DATA (default ../shared/data), OUT (model/log directory,
# default /tmp/glintru-bench), BIN (default build), THREADS (2), EPOCHS
# (200; early stopping with patience 10 normally ends sooner), ONLY (run one
# dataset: ml-1m or amazon-beauty), SPEED (1: only the database-against-CLI
# speed section below; 0: skip it), SPEED_EPOCHS (3).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$here/../shared/data}
OUT=${OUT:-/tmp/glintru-bench}
BIN=${BIN:-$here/build}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-200}
ONLY=${ONLY:-}
mkdir -p "$OUT"

# ---- speed: the database against the command line (issue 12) -------------
# Side by side on ML-1M with the quality run's options (d 64, heads 4, L 200,
# min-item-count 5, seed 42): SPEED_EPOCHS (3) epochs of glintru-train
# --threads $THREADS, then of glintru_train(workers => $THREADS) in a private
# cluster (bench/lib.sh: the tree copied, built and installed into a
# relocated PostgreSQL; glintru-train built from the same copy).  Prints the
# mean seconds per epoch of both, their ratio (target: database within 1.2x),
# whether the two models are byte-identical (they must be), the load average
# around each run, and how long a pg_cancel_backend takes to end a parallel
# ML-1M training.  SPEED=1 runs only this; SPEED=0 skips it; by default it
# runs after the quality table.
speed_run() {
	ROOT=$here
	. "$here/bench/lib.sh"
	SPEED_EPOCHS=${SPEED_EPOCHS:-3}
	# lib.sh draws a port from bash's RANDOM; this is sh
	BENCH_PORT=${BENCH_PORT:-$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000 + 20000 ))}
	bench_init speed
	bench_build
	log "glintru-train from the same copy"
	make -C "$SRC" build/glintru-train >>"$W/build.log" 2>&1 || { cat "$W/build.log"; exit 1; }
	bench_cluster
	q -c "CREATE EXTENSION glintru" -c "CREATE TABLE ratings (user_id bigint, item_id bigint, seq bigint)"
	xz -dc "$DATA/ml-1m/interactions.tsv.xz" | q -c "COPY ratings FROM STDIN WITH (FORMAT text, HEADER true)"
	opts="\"d\": 64, \"heads\": 4, \"max_seq_len\": 200, \"min_item_count\": 5, \"patience\": 10, \"seed\": 42, \"workers\": $THREADS"
	load_cli0=$(cut -d' ' -f1 /proc/loadavg)
	log "glintru-train --threads $THREADS, $SPEED_EPOCHS epochs"
	"$SRC/build/glintru-train" --data "$DATA/ml-1m/interactions.tsv.xz" --out "$W/cli.safetensors" --d 64 --heads 4 \
		--max-seq-len 200 --min-item-count 5 --patience 10 --seed 42 --threads "$THREADS" --epochs "$SPEED_EPOCHS" 2> "$W/cli.log"
	load_cli1=$(cut -d' ' -f1 /proc/loadavg)
	log "glintru_train(workers => $THREADS), $SPEED_EPOCHS epochs"
	q -c "SELECT glintru_train('speed', 'ratings', order_column => 'seq', options => '{$opts, \"epochs\": $SPEED_EPOCHS}')" \
		> /dev/null 2> "$W/db.log"
	load_db1=$(cut -d' ' -f1 /proc/loadavg)
	cli_spe=$(grep '^epoch ' "$W/cli.log" | awk '{ for (i = 1; i <= NF; i++) if ($i == "s/epoch") { s += $(i-1); n++ } } END { printf "%.1f", s / n }')
	db_spe=$(sed -n 's/^NOTICE:  epoch .*, \([0-9.]*\) s$/\1/p' "$W/db.log" | awk '{ s += $1; n++ } END { printf "%.1f", s / n }')
	same=no
	[ "$(q -c "SELECT encode(sha256(weights), 'hex') FROM glintru.models WHERE name = 'speed'")" = \
	  "$(sha256sum "$W/cli.safetensors" | cut -d' ' -f1)" ] && same=yes
	echo
	echo "Speed, ML-1M (d 64, heads 4, L 200, min-item-count 5), $SPEED_EPOCHS epochs each, $THREADS workers, $(nproc) CPUs; $SRCDESC"
	echo
	echo "| engine | s/epoch | load average (1 min) before → after |"
	echo "|---|---|---|"
	echo "| glintru-train --threads $THREADS | $cli_spe | $load_cli0 → $load_cli1 |"
	echo "| glintru_train(workers => $THREADS) | $db_spe | $load_cli1 → $load_db1 |"
	echo
	echo "database / command line: $(echo "$db_spe $cli_spe" | awk '{ printf "%.2f", $1 / $2 }')x (target <= 1.2x); same model byte for byte: $same"
	log "cancel: pg_cancel_backend 20 s into a training with workers => $THREADS"
	PGAPPNAME=speed_cancel psql -X -q -c "SELECT glintru_train('cancelled', 'ratings', order_column => 'seq', options => '{$opts}')" \
		> "$W/cancel.log" 2>&1 &
	sleep 20
	t0=$(date +%s%N)
	q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'speed_cancel'" > /dev/null
	wait $! || true			# psql fails with the cancel error
	t1=$(date +%s%N)
	stored=$(q -c "SELECT count(*) FROM glintru.models WHERE name = 'cancelled'")
	echo "pg_cancel_backend → statement ended: $(( (t1 - t0) / 1000000 )) ms ($(grep -o 'canceling statement due to user request' "$W/cancel.log" || echo "no cancel error")), models stored: $stored"
}
if [ "${SPEED:-}" = 1 ]; then
	speed_run
	exit 0
fi

for tool in glintru-train glintru-eval; do
	if [ ! -x "$BIN/$tool" ]; then
		echo "missing $BIN/$tool: run 'make -f tools/Makefile.train train-tools' first" >&2
		exit 1
	fi
done

metric() { # metric NAME < glintru-eval output
	awk -v n="$1" '$1 == n { print $2 }'
}

rows=""
settings=""
run() { # run NAME L MIN_ITEM_COUNT
	name=$1; L=$2; mic=$3
	data=$DATA/$name/interactions.tsv.xz
	model=$OUT/$name.safetensors
	log=$OUT/$name.train.log
	echo "== $name: training (log: $log)" >&2
	t0=$(date +%s)
	# /usr/bin/time: CPU seconds of the trainer and its worker processes (a
	# shared machine stretches wall time; CPU time much less)
	/usr/bin/time -f "cpu %U %S" -o "$log.cpu" \
	"$BIN/glintru-train" --data "$data" --out "$model" --d 64 --heads 4 --max-seq-len "$L" \
		--min-item-count "$mic" --threads "$THREADS" --epochs "$EPOCHS" --patience 10 --seed 42 \
		2> "$log"
	t1=$(date +%s)
	settings="$settings
$name: $(grep -m1 '^training:' "$log")"
	epochs=$(grep -c '^epoch ' "$log")
	best=$(grep '^epoch ' "$log" | tail -1 | sed 's/.*(best \([0-9.]*\) @\([0-9]*\)).*/\2/')
	spe=$(grep '^epoch ' "$log" | awk '{ for (i = 1; i <= NF; i++) if ($i == "s/epoch") { s += $(i-1); n++ } } END { printf "%.1f", s / n }')
	cpe=$(awk -v e="$epochs" '$1 == "cpu" { printf "%.1f", ($2 + $3) / e }' "$log.cpu")
	full=$("$BIN/glintru-eval" --data "$data" --model "$model" --protocol full --threads "$THREADS")
	pop=$("$BIN/glintru-eval" --data "$data" --model "$model" --protocol pop100 --threads "$THREADS")
	bfull=$("$BIN/glintru-eval" --data "$data" --baseline popularity --min-item-count "$mic" --protocol full)
	bpop=$("$BIN/glintru-eval" --data "$data" --baseline popularity --min-item-count "$mic" --protocol pop100)
	rows="$rows
$name|GLINT-RU (C engine)|$(echo "$full" | metric HR@10)|$(echo "$full" | metric NDCG@10)|$(echo "$full" | metric MRR@10)|$(echo "$pop" | metric HR@10)|$(echo "$pop" | metric NDCG@10)|$(echo "$pop" | metric MRR@10)|$spe|$cpe|$((t1 - t0))|$epochs (best $best)
$name|popularity|$(echo "$bfull" | metric HR@10)|$(echo "$bfull" | metric NDCG@10)|$(echo "$bfull" | metric MRR@10)|$(echo "$bpop" | metric HR@10)|$(echo "$bpop" | metric NDCG@10)|$(echo "$bpop" | metric MRR@10)||||"
}

if [ -z "$ONLY" ] || [ "$ONLY" = ml-1m ]; then run ml-1m 200 5; fi
if [ -z "$ONLY" ] || [ "$ONLY" = amazon-beauty ]; then run amazon-beauty 50 0; fi

echo
echo "Test split, leave-one-out (SPEC §4); full = rank among all items but the user's history; pop100 = target + 100 popularity-sampled negatives."
echo
echo "s/epoch: wall seconds per epoch (training and validation) with $THREADS worker processes; CPU s/epoch: their CPU seconds per epoch, all processes together ($(nproc) cores, shared machine: wall time includes waiting for other jobs)."
echo
echo "| dataset | model | HR@10 full | NDCG@10 full | MRR@10 full | HR@10 pop100 | NDCG@10 pop100 | MRR@10 pop100 | s/epoch | CPU s/epoch | total s | epochs |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "$rows" | awk -F'|' 'NF > 1 { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }'
echo
echo "Training settings (glintru-train's defaults; dropouts chosen from the data):$settings"

if [ "${SPEED:-}" != 0 ]; then speed_run; fi
