#!/usr/bin/env bash
# Train the embedded prior on the GPU machine (device tool), one call of at most ~9 minutes.
#
#   bash lab/scripts/gpu_train_prior.sh [MINUTES=8] [RUN_DIR=out/prior] [FROM] [extra train-prior options...]
#
# - Sources lab/scripts/device_setup.sh (carried wheels, package links); gsplat is not needed: the
#   dataset is rendered with the pure-torch splatter on CUDA (BUILD_GSPLAT=0 saves ~2 min).
# - Resumes from RUN_DIR/checkpoint when it exists: carry "out/prior/checkpoint" on later calls
#   after restoring it locally with:  mkdir -p out/prior && cat FILES_AT/checkpoint.tar.part-* | tar -x -C out/prior
#   (the dataset is re-rendered on a fresh machine, ~1-2 min; it stays cached while the machine is warm).
#   Carry it on every follow-up call: a machine reported warm at the end of one call is released after
#   ~30 s idle, and without a checkpoint the script starts again from FROM, saying only "continuing the exported
#   prior" (seen 2026-12-02).
# - With --ema-decay the checkpoint holds the moving average too (~50 MB): with the ~14 MB of wheels
#   that is over the device tool's 64 MiB carry limit (refused, 3 Dec 2026). Within one warm machine
#   do not carry it (the run directory stays there between back-to-back calls); on a fresh machine
#   continue from the export instead (FROM=worker/assets/prior: the average, in fp16), which restarts
#   the raw weights and the average from it.
# - --batch-size 128 --lr 4e-4 on an H200: 166 steps/min, 2.3x the clips a minute of batch 32.
# - Without a checkpoint, FROM (e.g. worker/assets/prior, the committed export) continues that run
#   in float32 with a fresh AdamW: the checkpoint is not needed to keep training the shipped prior.
# - Brings back in $OUT (each file < 16 MB, at most 8 files):
#     prior.tar                 the exported fp16 diffusers folder -> tar -x -C worker/assets && mv worker/assets/export worker/assets/prior
#     checkpoint.tar.part-*     weights + state.json (no optimizer state: AdamW restarts on resume)
#     train.log                 the last lines of the log (the last one is the run's summary)
#     check.json                with CHECK_CLIPS=N set: `animus3d check-prior` of the export on N
#                               held-out clips (~1 min for 104). Run follow-up commands in this
#                               script, not after it in the same call: the package paths that
#                               device_setup.sh exports do not reach the calling shell.
#     check-new.json            with CHECK_NEW_CLIPS=N set: the same on N clips of objects no run trains on
#                               (check-prior --new-objects)
#     sdedit.txt                with SDEDIT_SUITE=FILE.jsonl set: scripts/sdedit_probe.py --suite FILE on the
#                               export (strength 0.95, CFG 15 and 30), does the prior draw each case's motion
set -uo pipefail
MINUTES=${1:-8}
RUN=${2:-out/prior}
FROM=${3:-}
shift $(( $# < 3 ? $# : 3 ))
export BUILD_GSPLAT=0
source lab/scripts/device_setup.sh
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" "$RUN"

RESUME=()
if [ -f "$RUN/checkpoint/state.json" ]; then
  RESUME=(--resume "$RUN/checkpoint")
  echo "resuming from $RUN/checkpoint: $(head -c 300 "$RUN/checkpoint/state.json" | tail -c 200)"
elif [ -n "$FROM" ]; then
  RESUME=(--resume "$FROM")
  echo "continuing the exported prior $FROM"
fi
python3 -m animus3d_worker.cli train-prior --device cuda --render-backend torch --minutes "$MINUTES" \
  --out "$RUN" "${RESUME[@]}" "$@" 2>&1 | tee "$RUN/train.log" | grep -v "Writing model shards\|Loading weights"
status=${PIPESTATUS[0]}
tail -n 200 "$RUN/train.log" > "$OUT/train.log"
if [ -d "$RUN/export" ]; then
  tar -C "$RUN" -cf "$OUT/prior.tar" export
  du -h "$OUT/prior.tar"
fi
# The checkpoint first: what is in $OUT comes back even when a check below runs past the call's limit.
if [ -d "$RUN/checkpoint" ]; then
  tar -C "$RUN" -cf - --exclude optimizer.pt checkpoint | split -b 15M - "$OUT/checkpoint.tar.part-"
  ls -l "$OUT"
fi
if [ -n "${CHECK_CLIPS:-}" ] && [ -d "$RUN/export" ]; then
  python3 -m animus3d_worker.cli check-prior --prior "$RUN/export" --clips "$CHECK_CLIPS" --device cuda \
    --render-backend torch --out "$OUT/check.json" 2>&1 | grep -v "Loading weights" | tail -n 20
fi
if [ -n "${CHECK_NEW_CLIPS:-}" ] && [ -d "$RUN/export" ]; then
  python3 -m animus3d_worker.cli check-prior --prior "$RUN/export" --clips "$CHECK_NEW_CLIPS" --device cuda \
    --render-backend torch --new-objects --out "$OUT/check-new.json" 2>&1 | grep -v "Loading weights" | tail -n 20
fi
if [ -n "${SDEDIT_SUITE:-}" ] && [ -d "$RUN/export" ]; then
  python3 lab/scripts/sdedit_probe.py --suite "$SDEDIT_SUITE" --prior "$RUN/export" --strengths 0.95 \
    --guidances 15,30 --device cuda 2>&1 | grep -v "Loading weights" > "$OUT/sdedit.txt"
  tail -n 12 "$OUT/sdedit.txt"
fi
exit "$status"
