"""The GPU self-check as a script: `python benchmarks/gpu_check.py [--json FILE] [--steps N]`
runs exactly `maebench doctor` (maebench/doctor.py), with the same options and exit status."""
from __future__ import annotations

import sys

from maebench.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["doctor", *sys.argv[1:]]))
