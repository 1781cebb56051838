"""The ``handvox`` command line: every argument parser, and the commands that are only runs of
the library (predict over files, bench, demo)."""

import os

# The command line owns its process, so it, not the library, sets OpenMP's wait policy:
# busy-waiting OpenMP threads made small batched solves (IK) several times slower on a shared
# 2-core machine (benchmarks/ik_real_labels.py; figures in docs/benchmarks.md, "OpenMP's wait
# policy"). OpenMP reads it when torch loads, so it is set here, before any command module
# imports torch (``import handvox`` itself does not).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
