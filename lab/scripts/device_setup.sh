# Sourced at the start of a device-tool run (GPU machine, no network): install the carried wheels,
# expose the repo's packages under their import names, and pre-build gsplat's CUDA extension.
set -e
export PYTHONUNBUFFERED=1
# Once per machine: a second source (a script run from a script) must not reinstall under a running import.
if [ "$(ls .whl)" != "$(cat /tmp/site/.animus3d-wheels 2>/dev/null)" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  ls .whl > /tmp/site/.animus3d-wheels
fi
mkdir -p /tmp/pkgs
ln -sfn "$PWD/shared" /tmp/pkgs/animus3d_shared
ln -sfn "$PWD/worker" /tmp/pkgs/animus3d_worker
ln -sfn "$PWD/lab/animus3d_lab" /tmp/pkgs/animus3d_lab
export PYTHONPATH="/tmp/pkgs:/tmp/site:$PWD"
export ANIMUS3D_CACHE=/tmp/animus3d-cache HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ "${BUILD_GSPLAT:-1}" = 1 ]; then
  t0=$(date +%s); python3 -c "from gsplat.cuda._backend import _C" && echo "gsplat compiled in $(( $(date +%s) - t0 )) s"
fi
set +e
