# One device-tool call measuring the default preset (`standard`) on a GPU: the embedded prior and the
# ModelScope-size random prior, each with its direct reference in the same run. Sourced after
# lab/scripts/device_setup.sh (wheels installed, packages importable, gsplat built); writes to $OUT.
set -o pipefail
B="python3 -m animus3d_worker.cli bench --device cuda --preset standard"
timeout 120 $B --prior embedded --json "$OUT/embedded.json" 2>&1 | tee "$OUT/embedded.txt"
timeout "${FULL_TIMEOUT:-330}" $B --prior full --json "$OUT/full.json" 2>&1 | tee "$OUT/full.txt"
