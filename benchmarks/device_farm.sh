# One device-tool call measuring `standard` jobs sharing one GPU through `animus3d farm` (1, 2 and 4
# slots, each slot 1/N of the card): benchmarks/bench_farm.py on CUDA. Needs what device_setup.sh
# installs plus pyzmq, Ray's small dependencies and Ray itself in .farmwhl/ (Ray as ray-slim.tar.xz:
# the wheel without Java, RLlib, Serve, Tune, Train, Data and the dashboard's web build, which the
# farm does not use, so that it fits one call's carry).
source benchmarks/device_setup.sh
for pair in zmq:pyzmq click:click jsonschema:jsonschema attr:attrs referencing:referencing rpds:rpds_py \
            jsonschema_specifications:jsonschema_specifications google.protobuf:protobuf; do
  python3 -c "import ${pair%%:*}" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile \
      --target /tmp/site .farmwhl/${pair##*:}-*.whl
done
[ -d /tmp/site/ray ] || tar xJf .farmwhl/ray-slim.tar.xz -C /tmp/site
python3 -c "import ray, zmq; print('ray', ray.__version__, 'pyzmq', zmq.__version__)" || exit 1
timeout "${FARM_TIMEOUT:-420}" python3 benchmarks/bench_farm.py --device cuda --preset standard \
    --gaussians "${GAUSSIANS:-20000}" --jobs "${JOBS:-4}" --slots 1 --slots 2 --slots 4 2>&1 | tee "$OUT/farm.txt"
