#!/usr/bin/env bash
# Run evaluation shards as parallel processes on the GPU machine (device tool), within one call.
#
#   bash lab/scripts/gpu_evaluate.sh SHARDS MINUTES OUT_DIR [animus3d evaluate options...]
#   ONLY="4 5 6 7" bash lab/scripts/gpu_evaluate.sh 12 9.5 $OUT/eval --suite evals/suite.jsonl --preset standard --device cuda
#
# Starts one `animus3d evaluate --shard I/SHARDS` process per shard index (all of 0..SHARDS-1, or the
# indices in $ONLY) at once on the one GPU, stops them so that the whole script (set-up and gsplat
# build included) ends within MINUTES, merges what finished (`evaluate` writes results.json after every
# case) into OUT_DIR/results.json and prints the table.
# Measured on one H200 (2 Dec 2026, `standard`, embedded prior, gsplat): one process does a case in
# 44-50 s; four processes finished 12 cases in 361 s (30 s a case), eight 16 cases in ~515 s (no
# better than four): run about four at a time, e.g. the 36-case suite as 12 shards of 3 cases, four
# per call. A fresh machine adds ~80 s start-up and ~90 s gsplat build (BUILD_GSPLAT=0 skips it and
# uses the pure-torch renderer, 83-107 s a case).
# The device tool brings back at most 8 files a call, so the shard folders and logs are packed into
# OUT_DIR/shards.tar.gz and removed: what comes back is OUT_DIR/results.json and that archive.
set -uo pipefail
SHARDS=${1:?shards}; MINUTES=${2:?minutes}; DIR=${3:?out dir}; shift 3
START=$SECONDS
source lab/scripts/device_setup.sh
mkdir -p "$DIR"
LEFT=$(python3 -c "print(max(30, int($MINUTES * 60 - ($SECONDS - $START) - 25)))")
INDICES=${ONLY:-$(seq 0 $((SHARDS - 1)))}
echo "shards $INDICES of $SHARDS get $LEFT s"
for i in $INDICES; do
  OMP_NUM_THREADS=2 timeout "$LEFT" python3 -m animus3d_worker.cli evaluate --shard "$i/$SHARDS" \
    --out "$DIR/shard-$i" "$@" > "$DIR/shard-$i.log" 2>&1 &
done
wait
grep -h "expected" "$DIR"/shard-*.log | grep -v Traceback | head -100
python3 lab/scripts/merge_eval.py "$DIR/results.json" "$DIR"/shard-*/results.json
for i in $INDICES; do tail -n 3 "$DIR/shard-$i.log" | grep -i "error" && echo "(shard $i)"; done
tar czf "$DIR/shards.tar.gz" -C "$DIR" $(cd "$DIR" && ls -d shard-*) && rm -rf "$DIR"/shard-*
exit 0
