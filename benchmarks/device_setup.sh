# Sourced by the device-tool benchmark scripts: installs the carried wheels into /tmp/site, puts the
# repo's packages on PYTHONPATH and builds gsplat's CUDA extension into .torchext/ (git-ignored, so a
# warm machine may keep it between calls; the build, about 33 MB, is too large to hand back and carry).
set -o pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ANIMUS3D_CACHE=/tmp/animus3d-cache
export TORCH_EXTENSIONS_DIR="$PWD/.torchext"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkgs "$TORCH_EXTENSIONS_DIR"
ln -sfn "$PWD/shared" /tmp/pkgs/animus3d_shared
ln -sfn "$PWD/worker" /tmp/pkgs/animus3d_worker
ln -sfn "$PWD/lab/animus3d_lab" /tmp/pkgs/animus3d_lab
export PYTHONPATH="/tmp/pkgs:/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s); python3 -c "from gsplat.cuda._backend import _C" && echo "gsplat ready in $(( $(date +%s) - t0 )) s"
