#!/usr/bin/env bash
# bench/plots.sh — the README's performance pictures, drawn with gnuplot from the
# benchmarks' own printed output (never from numbers typed in by hand).
#
#   bench/plots.sh --recommend REC.txt --live LIVE.txt --train TRAIN.log [--out DIR]
#   bench/plots.sh --run [--out DIR]      runs the benchmarks whose output is not given,
#                                         saves it under DIR/bench-output/, then draws
#
# Inputs (any subset; a picture is drawn for each input given):
#   --recommend  stdout of bench/recommend_history.sh → DIR/latency-history.png (ms per call
#                against history length, glintru beside PyTorch) and DIR/latency-catalogue.png
#                (ms per call against catalogue size, with the memory-bandwidth bound: the
#                'sweep' lines, or, in an output without them, the ml1m-shape and 1M rows)
#   --live       stdout of bench/live.sh → DIR/insert-throughput.png (section 1: single-row
#                INSERT rows/s, plain table against attached)
#   --train      glintru-train's stderr (its 'epoch' lines) → DIR/train-ndcg.png (validation
#                NDCG@10 and loss per epoch); TRAIN_LABEL names the run in the title
#                (default: the data line of the log)
#   --quality    the two training logs of bench/train_ml1m.sh, ML-1M and Amazon Beauty
#                (--quality ML1M.log BEAUTY.log) → DIR/train-quality.png (validation NDCG@10
#                per epoch of both, the best epoch marked: the model early stopping keeps)
# --run trains on ML-100k (GLINTRU_SHARED/data/ml-100k, TRAIN_EPOCHS epochs, default 15,
# with the glintru-train of build/ or of pg_config's bindir).  Default DIR: docs.
# Needs gnuplot (Debian: apt-get install gnuplot-nox).
set -euo pipefail
HERE=$(pwd)
cd "$(dirname "$0")/.."
SHARED=${GLINTRU_SHARED:-$(pwd)/../shared}
abs() { case $1 in /*) echo "$1" ;; *) echo "$HERE/$1" ;; esac; }  # paths given are the caller's
REC="" LIVE="" TRAIN="" QML="" QBEAUTY="" OUT=docs RUN=0
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --recommend) REC=$(abs "${2:?}"); shift 2 ;;
    --live) LIVE=$(abs "${2:?}"); shift 2 ;;
    --train) TRAIN=$(abs "${2:?}"); shift 2 ;;
    --quality) QML=$(abs "${2:?}"); QBEAUTY=$(abs "${3:?}"); shift 3 ;;
    --out) OUT=$(abs "${2:?}"); shift 2 ;;
    --run) RUN=1; shift ;;
    *) usage ;;
  esac
done
[ "$RUN" = 1 ] || [ -n "$REC$LIVE$TRAIN$QML" ] || usage
command -v gnuplot >/dev/null || { echo "no gnuplot: apt-get install -y gnuplot-nox" >&2; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/glintru-plots.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ---- --run: the benchmarks, their output saved ----
if [ "$RUN" = 1 ]; then
  mkdir -p "$OUT/bench-output"
  if [ -z "$REC" ]; then
    REC=$OUT/bench-output/recommend_history.txt
    echo "running bench/recommend_history.sh → $REC" >&2
    bash bench/recommend_history.sh >"$REC"
  fi
  if [ -z "$LIVE" ]; then
    LIVE=$OUT/bench-output/live.txt
    echo "running bench/live.sh → $LIVE" >&2
    bash bench/live.sh >"$LIVE"
  fi
  if [ -z "$TRAIN" ]; then
    TRAIN=$OUT/bench-output/train_ml100k.log
    tool=build/glintru-train
    [ -x "$tool" ] || tool=$(pg_config --bindir)/glintru-train
    echo "training on ML-100k with $tool → $TRAIN" >&2
    cmd=("$tool" --data "$SHARED/data/ml-100k/interactions.tsv.xz" --out "$TMP/ml100k.safetensors"
         --min-item-count 5 --epochs "${TRAIN_EPOCHS:-15}" --patience 0 --threads 2)
    echo "command: ${cmd[*]}" >"$TRAIN"
    "${cmd[@]}" 2>>"$TRAIN"
  fi
fi

# "N cores" as the benchmark printed it (the machine the numbers come from)
cores() { grep -o '[0-9]* cores, shared machine' "$1" | head -1 | awk '{print $1 "-core shared machine"}'; }
# the gnuplot preamble every picture shares
plot() {  # PNG, then the gnuplot commands on stdin
  { echo "set terminal pngcairo size 900,540 font 'DejaVu Sans,11' noenhanced"
    echo "set output '$1'"
    echo "set grid lc rgb '#dddddd'; set key top left box opaque"
    cat; } >"$TMP/plot.gp"
  gnuplot "$TMP/plot.gp"
  echo "wrote $1" >&2
}

if [ -n "$REC" ]; then
  # history N  pgbench plpgsql core (fwd) torch/1 torch/N …  ('-' where torch did not run)
  awk '$1 == "history" && $2 ~ /^[0-9]+$/ {
         print $2, $3, $4, ($7 == "-" ? "NaN" : $7), ($8 == "-" ? "NaN" : $8) }' "$REC" >"$TMP/hist.dat"
  [ -s "$TMP/hist.dat" ] || { echo "$REC: no 'history N' rows (not bench/recommend_history.sh output?)" >&2; exit 1; }
  nt=$(grep -o 'torch/[0-9]*' "$REC" | sed -n 2p | cut -d/ -f2)
  plot "$OUT/latency-history.png" <<EOF
set title "glintru_recommend_history, ml1m-shape model (3,416 items, d 64, L 200), one client\n$(cores "$REC"), noisy: other jobs share it"
set xlabel "history length (items, log scale)"; set ylabel "ms per call (log scale)"
set logscale xy; set xrange [0.7:1500]; set yrange [0.02:100]; set key bottom center outside maxrows 2 box; set bmargin 7
set xtics ("1" 1, "50" 50, "200" 200, "1000" 1000)
set arrow from 200, graph 0 to 200, graph 1 nohead dt 3 lc rgb '#999999'
set label "L = 200: a longer history\nis cut to its last 200 items" at 210, 0.035 left tc rgb '#666666'
plot '$TMP/hist.dat' u 1:4 w lp lw 2 pt 7 lc rgb '#d62728' t "PyTorch reference, 1 thread", \
     '' u 1:5 w lp lw 2 pt 6 dt 2 lc rgb '#ff9896' t "PyTorch reference, ${nt:-all} threads", \
     '' u 1:2 w lp lw 2 pt 5 lc rgb '#1f77b4' t "glintru, pgbench (with client round trip)", \
     '' u 1:3 w lp lw 2 pt 4 dt 2 lc rgb '#17becf' t "glintru, in-database (PL/pgSQL loop)"
EOF

  # sweep ITEMS pgbench plpgsql bound; without sweep lines: the ml1m-shape row of history 50
  # and the 1M row, with the 1M bound only
  awk '$1 == "sweep" && $2 ~ /^[0-9]+$/ { print $2, $3, $4, $5 }' "$REC" >"$TMP/cat.dat"
  if [ ! -s "$TMP/cat.dat" ]; then
    awk '$1 == "history" && $2 == 50 { m = $3 " " $4 }
         $1 == "1M" && $2 == "items," { g = $5 " " $6 }
         /^  bandwidth bound \(plain read of 256 MB\)/ { b = $8 }
         END { if (m != "") print 3416, m, "NaN"; if (g != "") print 1000000, g, (b == "" ? "NaN" : b) }' \
      "$REC" >"$TMP/cat.dat"
  fi
  plot "$OUT/latency-catalogue.png" <<EOF
set title "glintru_recommend_history, history of 50, d 64: time against catalogue size\n$(cores "$REC"), noisy; 3,416 = the trained ml1m-shape model, larger ones random weights"
set xlabel "catalogue size (items, log scale)"; set ylabel "ms per call (log scale)"
set logscale xy; set xrange [2000:2000000]; set yrange [0.005:100]
set xtics ("3,416" 3416, "10k" 10000, "100k" 100000, "1M" 1000000)
plot '$TMP/cat.dat' u 1:2 w lp lw 2 pt 5 lc rgb '#1f77b4' t "glintru, pgbench (with client round trip)", \
     '' u 1:3 w lp lw 2 pt 4 dt 2 lc rgb '#17becf' t "glintru, in-database (PL/pgSQL loop)", \
     '' u 1:4 w lp lw 2 pt 9 lc rgb '#7f7f7f' t "bound: plain read of the item table (N x 64 floats)"
EOF
fi

if [ -n "$LIVE" ]; then
  # section 1 rows: a label, then plain r/s, live r/s, ratio, plain ms, live ms, WAL, WAL w/o FPI
  awk '/^1\. single-row INSERT/ { on = 1; next } on && /trigger cost/ { exit }
       on && /^   short \(/ { print "\"short history\\n(< L, eager)\"", $(NF-6), $(NF-5) }
       on && /^   long .*eager/ { print "\"full window\\n(eager: slides)\"", $(NF-6), $(NF-5) }
       on && /^   long .*deferred/ { print "\"full window\\n(deferred)\"", $(NF-6), $(NF-5) }
       on && /^   short, 4 clients/ { print "\"short history,\\n4 clients (eager)\"", $(NF-6), $(NF-5) }' \
    "$LIVE" >"$TMP/ins.dat"
  [ "$(wc -l <"$TMP/ins.dat")" = 4 ] || { echo "$LIVE: section 1 rows not found (not bench/live.sh output?)" >&2; exit 1; }
  ymax=$(awk '{ for (i = NF - 1; i <= NF; i++) if ($i > m) m = $i } END { print m * 1.25 }' "$TMP/ins.dat")
  plot "$OUT/insert-throughput.png" <<EOF
set title "single-row INSERT into the ML-1M interactions table (pgbench -M prepared): plain against attached\n$(cores "$LIVE"), noisy: other jobs share it"
set ylabel "rows per second (higher is better)"; set yrange [0:$ymax]
set style data histogram; set style histogram clustered gap 1.5
set style fill solid 0.85 border -1; set boxwidth 0.9; set key top center horizontal box opaque
set xtics nomirror; set grid noxtics ytics; set bmargin 4.5
plot '$TMP/ins.dat' u 2:xtic(1) lc rgb '#7f7f7f' t "plain table", \
     '' u 3 lc rgb '#1f77b4' t "attached to a glintru model", \
     '' u (\$0 - 0.17):(\$2):(sprintf("%.0f", \$2)) w labels offset 0,0.7 notitle, \
     '' u (\$0 + 0.17):(\$3):(sprintf("%.0f", \$3)) w labels offset 0,0.7 notitle
EOF
fi

if [ -n "$TRAIN" ]; then
  # epoch  e/E  loss X  val NDCG@10 Y (best …)
  awk '$1 == "epoch" { split($2, e, "/"); print e[1], $4, $7 }' "$TRAIN" >"$TMP/train.dat"
  [ -s "$TMP/train.dat" ] || { echo "$TRAIN: no 'epoch' lines (not glintru-train output?)" >&2; exit 1; }
  # the run: TRAIN_LABEL, else the data file of a 'command:' line (--run writes one) and the data line
  data=$(sed -n 's/^command: .*--data \([^ ]*\).*/\1/p' "$TRAIN" | head -1)
  label=${TRAIN_LABEL:-${data:+$(basename "$(dirname "$data")"): }$(grep -m1 '^data:' "$TRAIN" | sed 's/ ([^)]*)//g; s/^data: //')}
  ne=$(wc -l <"$TMP/train.dat")
  plot "$OUT/train-ndcg.png" <<EOF
set title "glintru-train: validation NDCG@10 (full ranking) and training loss per epoch\n$label"
set xlabel "epoch"; set ylabel "validation NDCG@10"; set y2label "training loss (cross-entropy)"
set ytics nomirror; set y2tics; set key center right box opaque; set xrange [0.5:$ne + 0.5]
set xtics $(( ne <= 20 ? 1 : (ne + 9) / 10 ))
plot '$TMP/train.dat' u 1:3 w lp lw 2 pt 7 lc rgb '#1f77b4' t "validation NDCG@10 (left)", \
     '' u 1:2 axes x1y2 w lp lw 2 pt 4 dt 2 lc rgb '#ff7f0e' t "training loss (right)"
EOF
fi

if [ -n "$QML" ]; then
  # epoch  e/E  loss X  val NDCG@10 Y …, per dataset; the best epoch's point marked
  qm=$TMP/quality-ml1m.dat qb=$TMP/quality-beauty.dat
  awk '$1 == "epoch" { split($2, e, "/"); print e[1], $7 }' "$QML" >"$qm"
  awk '$1 == "epoch" { split($2, e, "/"); print e[1], $7 }' "$QBEAUTY" >"$qb"
  [ -s "$qm" ] && [ -s "$qb" ] || { echo "--quality: no 'epoch' lines (not glintru-train output?)" >&2; exit 1; }
  best() { sort -k2,2g "$1" | tail -1; }  # epoch and value of the best validation NDCG@10
  read -r bm vm < <(best "$qm"); read -r bb vb < <(best "$qb")
  # the settings line of each log, without the density note
  setting() { grep -m1 '^training:' "$1" | sed 's/^training: //; s/ (from the data)//; s/ ([0-9.]* training interactions per item)//'; }
  plot "$OUT/train-quality.png" <<GP
set title "glintru-train, d 64, 4 heads, early stopping (patience 10): validation NDCG@10 (full ranking) per epoch\nML-1M (L 200): $(setting "$QML")\nAmazon Beauty (L 50): $(setting "$QBEAUTY")"
set xlabel "epoch"; set ylabel "validation NDCG@10"; set key bottom right box opaque; set yrange [0:*]; set tmargin 5
plot '$qm' u 1:2 w lp lw 2 pt 7 ps 0.6 lc rgb '#1f77b4' t "ML-1M", \\
     '$qb' u 1:2 w lp lw 2 pt 5 ps 0.6 lc rgb '#d62728' t "Amazon Beauty", \\
     '-' u 1:2 w p pt 6 ps 2.5 lw 2 lc rgb '#000000' t "best epoch: the model kept"
$bm $vm
$bb $vb
e
GP
fi
