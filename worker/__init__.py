"""Animus3D worker: the pipeline (torch, diffusers, peft, gsplat) and the service that runs it."""

import os

__version__ = "0.1.0"

# torch's CPU threads wait for work asleep, not spinning. On a machine whose cores other processes
# also use, spinning threads wait on a descheduled sibling at every operation, and the renderer's
# many small operations then run several times slower than on one thread (docs/benchmarks.md,
# "CPU threads"). Read when torch first loads, so it applies when this package is imported first;
# a value set in the environment is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
