#!/usr/bin/env bash
# Run the evaluation suite on the GPU machine (device tool) in parallel shards, within one call.
#
#   bash scripts/gpu_evaluate.sh SHARDS MINUTES OUT_DIR [animus3d evaluate options...]
#
# SHARDS=1 on one GPU: several processes time-share it (no MPS) and finished nothing where one process
# does a `standard` case in 44-50 s with gsplat (83-107 s with the pure-torch renderer, BUILD_GSPLAT=0)
# (H200, 2026-12-02, docs/evaluation.md): the 36-case suite is ~29 min of cases (~40 min with
# start-ups and builds); over several device calls run
# `python3 -m animus3d_worker.cli evaluate --shard I/5 --out $OUT/eval-I ...` directly, one I per call
# (after `source scripts/device_setup.sh`), and merge the results.json files with scripts/merge_eval.py.
# Shards in one call pay off across GPUs (CUDA_VISIBLE_DEVICES per shard, not done here) or under MPS
# (untested).
# Sources scripts/device_setup.sh (builds gsplat unless BUILD_GSPLAT=0; keep TORCH_EXTENSIONS_DIR
# under the repo, e.g. .cache/torch_extensions, so a warm machine reuses the build). Starts SHARDS
# `animus3d evaluate --shard I/SHARDS` processes on the one GPU (cases round-robin, so a run stopped
# by the time limit still covers every object kind), stops them so that the whole script (set-up and
# gsplat build included) ends within MINUTES, and merges what
# finished (`evaluate` writes results.json after every case) into OUT_DIR/results.json, printing the table.
set -uo pipefail
SHARDS=${1:?shards}; MINUTES=${2:?minutes}; DIR=${3:?out dir}; shift 3
START=$SECONDS
source scripts/device_setup.sh
mkdir -p "$DIR"
LEFT=$(python3 -c "print(max(30, int($MINUTES * 60 - ($SECONDS - $START) - 25)))")
echo "shards get $LEFT s"
for ((i = 0; i < SHARDS; i++)); do
  OMP_NUM_THREADS=1 timeout "$LEFT" python3 -m animus3d_worker.cli evaluate --shard "$i/$SHARDS" \
    --out "$DIR/shard-$i" "$@" > "$DIR/shard-$i.log" 2>&1 &
done
wait
grep -h "expected" "$DIR"/shard-*.log | grep -v Traceback | head -100
python3 scripts/merge_eval.py "$DIR/results.json" "$DIR"/shard-*/results.json
for ((i = 0; i < SHARDS; i++)); do tail -n 3 "$DIR/shard-$i.log" | grep -i "error" && echo "(shard $i)"; done
exit 0
