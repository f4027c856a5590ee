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
# dataset: ml-1m or amazon-beauty).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$here/../shared/data}
OUT=${OUT:-/tmp/glintru-bench}
BIN=${BIN:-$here/build}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-200}
ONLY=${ONLY:-}
mkdir -p "$OUT"

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
